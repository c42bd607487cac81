"""`manage.py export_preferences`: a study's people's (or judge's) preferences as JSON lines in the
preference shape TRL's DPOTrainer reads (its "Dataset formats" guide: prompt, chosen, rejected;
conversational as message lists, standard as strings), read back here as a trainer reads them: the
chat template applied to the prompt and to the prompt with each answer."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from evalsite.annotation.models import Comparison, Study
from evalsite.catalog.models import Prompt
from evalsite.judging.models import JudgeConfig, JudgeJob
from tests.test_dashboard_evidence import PLAN, half_voted_study
from tests.tiny_models import make_tokenizer

pytestmark = pytest.mark.django_db


def export(study, *args) -> list[dict]:
    out = StringIO()
    call_command("export_preferences", study.name, *args, stdout=out)
    return [json.loads(line) for line in out.getvalue().splitlines()]


def by_id(study) -> dict[int, Comparison]:
    rows = Comparison.objects.filter(study=study).select_related("candidate_response", "baseline_response", "prompt")
    return {c.pk: c for c in rows}


def test_the_peoples_preferences_in_trls_conversational_shape():
    study, _ = half_voted_study()
    lines = export(study)
    people = [p for p, _ in PLAN if p]
    assert len(lines) == people.count("a") + people.count("b"), "each comparison with a winner once, no tie"
    comparisons = by_id(study)
    tokenizer = make_tokenizer()
    for line in lines:
        comparison = comparisons[line["id"]]
        c, b, t = line["votes"]
        winner, loser = comparison.candidate_response, comparison.baseline_response
        if b > c:
            winner, loser = loser, winner
        assert line["prompt"] == comparison.prompt.messages
        assert line["chosen"] == [{"role": "assistant", "content": winner.text}]
        assert line["rejected"] == [{"role": "assistant", "content": loser.text}]
        assert line["source"] == "people" and "tie" not in line
        # what DPOTrainer does with a conversational example: the template over the prompt, then
        # over the prompt with each answer, the answer being what follows the prompt's text
        prompt = tokenizer.apply_chat_template(line["prompt"], tokenize=False, add_generation_prompt=True)
        chosen = tokenizer.apply_chat_template(line["prompt"] + line["chosen"], tokenize=False)
        assert chosen.startswith(prompt) and winner.text in chosen[len(prompt) :]
    assert sorted(line["votes"][0] > line["votes"][1] for line in lines) == [False] + [True] * 4


def test_ties_are_left_out_or_flagged():
    study, _ = half_voted_study()
    lines = export(study, "--keep-ties")
    ties = [line for line in lines if line.get("tie")]
    assert len(lines) == 6 and len(ties) == 1
    assert ties[0]["votes"] == [0, 0, 1]


def test_the_judges_preferences_and_the_standard_shape():
    study, job = half_voted_study()
    lines = export(study, "--job", str(job.pk), "--format", "standard")
    judged = [j for _, j in PLAN]
    assert len(lines) == judged.count("candidate") + judged.count("baseline")
    comparisons = by_id(study)
    for line in lines:
        comparison = comparisons[line["id"]]
        assert line["source"] == f"judge job {job.pk}" and "votes" not in line
        assert line["prompt"] == comparison.prompt.messages[0]["content"]
        assert {line["chosen"], line["rejected"]} == {
            comparison.candidate_response.text,
            comparison.baseline_response.text,
        }
        assert all(isinstance(line[k], str) for k in ("prompt", "chosen", "rejected"))


def test_bad_requests_name_what_is_wrong_and_write_nothing(tmp_path):
    study, job = half_voted_study()
    with pytest.raises(CommandError, match="no study named 'nope'"):
        call_command("export_preferences", "nope")
    other = Study.objects.create(name="other-study", candidate=study.candidate, prompt_set=study.prompt_set)
    stranger = JudgeJob.objects.create(study=other, config=JudgeConfig.objects.first(), status="done")
    with pytest.raises(CommandError, match=f"judge job {stranger.pk} is not a job of study {study.name}"):
        call_command("export_preferences", study.name, "--job", str(stranger.pk))
    # a conversation has no plain-text form: refused, and the file is not started
    comparison = Comparison.objects.filter(study=study, completed_at__isnull=False).order_by("-draw_order").first()
    Prompt.objects.filter(pk=comparison.prompt_id).update(
        messages=[
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello"},
            {"role": "user", "content": "tell me a story"},
        ]
    )
    out = tmp_path / "prefs.jsonl"
    with pytest.raises(CommandError, match="is a conversation \\(3 messages\\)"):
        call_command("export_preferences", study.name, "--format", "standard", "--keep-ties", "--out", str(out))
    assert not out.exists() and not list(tmp_path.iterdir())
    call_command("export_preferences", study.name, "--out", str(out))
    assert len(out.read_text().splitlines()) == 5
