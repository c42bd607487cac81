"""Gold checks that stand on their own: staff-labelled pairs from a file, or two systems' answers
on another prompt set that the judge rated far apart; they replace the degraded copies of the
candidate's answers that nobody was served, and are never one of the study's own prompts."""

from __future__ import annotations

import json

import pytest
from bs4 import BeautifulSoup
from django.core.management import CommandError, call_command

from evalsite.annotation import answers, claims
from evalsite.annotation.models import Comparison
from evalsite.catalog.models import Prompt, PromptSet, Response, System
from evalsite.judging.models import JudgeCall, JudgeConfig, Rating, RatingJob
from tests.annotation_fixtures import make_study, vote

pytestmark = pytest.mark.django_db


def write(path, lines: list, bom=True, crlf=True) -> str:
    text = ("\r\n" if crlf else "\n").join(json.dumps(x) if not isinstance(x, str) else x for x in lines)
    path.write_text(("\ufeff" if bom else "") + text + "\r\n", encoding="utf-8")
    return str(path)


def test_staff_labelled_pairs_replace_the_degraded_copies_nobody_was_served(tmp_path, staff_client, capsys):
    study, (a, _) = make_study(n_prompts=10, baselines=("alpaca-65b",), gold_rate=0.3)
    copies = list(Comparison.objects.filter(study=study, is_gold=True))
    assert len(copies) == 3
    vote(a, copies[0], "a")  # one copy was served: it stays (its vote is kept)
    pairs = write(
        tmp_path / "gold.jsonl",
        [
            {
                "id": "g1",
                "prompt": "How many legs does a spider have?",
                "better": "Eight.",
                "worse": "Six, like ants.",
                "note": "x",
            },
            {
                "id": "g2",
                "messages": [{"role": "user", "content": "Capital of Peru?"}],
                "better": "Lima.",
                "worse": "Quito.",
            },
            "",
        ],
    )
    call_command("gold", study=study.name, file=pairs)
    assert "2 gold pairs added; its gold: 1 decoys, 2 staff-labelled" in capsys.readouterr().out
    gold = Comparison.objects.filter(study=study, is_gold=True).select_related("candidate_response", "prompt")
    labelled = {c.prompt.external_id: c for c in gold if c.baseline.name == "gold-staff-worse"}
    assert (
        labelled["g1"].candidate_response.text == "Eight."
        and labelled["g1"].baseline_response.text == "Six, like ants."
    )
    assert labelled["g1"].gold_better == "candidate"
    assert not labelled["g1"].prompt.prompt_set == study.prompt_set
    # served like any gold check, and scored: the better answer picked is right
    claim = None
    for _ in range(60):
        claim = claims.claim_next(study, a, gold_only=True)
        if claim and claim.comparison_id == labelled["g2"].pk:
            break
        answers.submit(claim.pk, a, "tie")
    assert claim.comparison_id == labelled["g2"].pk
    page = BeautifulSoup(staff_client.get(f"/annotate/studies/{study.name}/").content, "html.parser")
    assert (
        page.select_one("#gold-sources")
        .get_text(" ", strip=True)
        .startswith("Gold: 1 decoy · 2 staff-labelled pairs.")
    )


@pytest.mark.parametrize(
    "lines, message",
    [
        (['{"id": "a", "prompt": "Q?", "better": "x", "worse": "y"}', "{not json"], "gold.jsonl:2: not valid JSON"),
        ([{"id": "a", "prompt": "Q?", "better": "x"}], "gold.jsonl:1: needs a non-empty 'worse' answer"),
        ([{"id": "a", "better": "x", "worse": "y"}], "gold.jsonl:1: needs a non-empty 'prompt'"),
        ([{"id": "a", "prompt": "Q?", "better": "x", "worse": "x "}], "'better' and 'worse' are the same text"),
        ([{"id": "x" * 101, "prompt": "Q?", "better": "x", "worse": "y"}], "gold.jsonl:1: id is longer than 100"),
        (
            [
                {"id": "a", "prompt": "Q?", "better": "x", "worse": "y"},
                {"id": "a", "prompt": "R?", "better": "x", "worse": "y"},
            ],
            "gold.jsonl:2: id 'a' was already used on line 1",
        ),
        (
            [{"id": "a", "prompt": "Question number 3?", "better": "x", "worse": "y"}],
            "asks one of the study's own prompts",
        ),
    ],
)
def test_a_bad_pairs_file_is_refused_whole(tmp_path, lines, message):
    study, _ = make_study(n_prompts=4, baselines=("alpaca-65b",), gold_rate=0.5)
    before = Comparison.objects.filter(study=study).count()
    with pytest.raises(CommandError, match=message):
        call_command("gold", study=study.name, file=write(tmp_path / "gold.jsonl", lines))
    assert (
        Comparison.objects.filter(study=study).count() == before
        and not PromptSet.objects.filter(name__startswith="gold-").exists()
    )


def test_pairs_the_judge_rated_far_apart_on_another_prompt_set(capsys):
    study, _ = make_study(n_prompts=4, baselines=("alpaca-65b",), gold_rate=0.0)
    dev = PromptSet.objects.create(name="dev")
    good, bad = (System.objects.create(name=n, backend="imported") for n in ("good-sys", "bad-sys"))
    config = JudgeConfig.objects.create(name="j", base_url="http://127.0.0.1:9/v1")
    jobs = {
        s: RatingJob.objects.create(config=config, system=s, prompt_set=dev, kind="likert", status="done")
        for s in (good, bad)
    }
    # d0: 6 vs 2 (a pair), d1: 4 vs 3 (too close), d2: 2 vs 5.5 (a pair, the other way round)
    scores = {"d0": (6, 2), "d1": (4, 3), "d2": (2, (5, 6))}
    for pid, (g, b) in scores.items():
        prompt = Prompt.objects.create(prompt_set=dev, external_id=pid, messages=[{"role": "user", "content": pid}])
        for system, values in ((good, g), (bad, b)):
            response = Response.objects.create(system=system, prompt=prompt, text=f"{system.name} on {pid}")
            for n, value in enumerate(values if isinstance(values, tuple) else (values,)):
                call = JudgeCall.objects.create(
                    key=f"{pid}{system.pk}{n}",
                    model="m",
                    template="likert",
                    template_hash="h",
                    reserved_at=jobs[system].created_at,
                )
                Rating.objects.create(job=jobs[system], response=response, sample=n, call=call, value=str(value))
    call_command("gold", study=study.name, judged_on="dev")
    assert "2 gold pairs added; its gold: 2 judged pairs" in capsys.readouterr().out
    gold = {
        c.prompt.external_id: c for c in Comparison.objects.filter(study=study, is_gold=True).select_related("prompt")
    }
    assert set(gold) == {"d0", "d2"}
    assert gold["d0"].candidate_response.system == good and gold["d0"].baseline == bad
    assert gold["d2"].candidate_response.system == bad and gold["d2"].baseline == good
    with pytest.raises(CommandError, match="no prompt of dev has two judged answers 5 or more apart"):
        call_command("gold", study=study.name, judged_on="dev", min_gap=5)
    with pytest.raises(CommandError, match="is the study's own prompt set"):
        call_command("gold", study=study.name, judged_on=study.prompt_set.name)
