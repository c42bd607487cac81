import json

import pytest
from django.core.management import CommandError, call_command
from django.db import IntegrityError, transaction

from evalsite.catalog.models import Prompt, PromptSet, Response, System

pytestmark = pytest.mark.django_db


@pytest.fixture
def prompts():
    test = PromptSet.objects.create(name="test")
    p1 = Prompt.objects.create(
        prompt_set=test, external_id="t1", messages=[{"role": "user", "content": "Why is the sky blue?"}]
    )
    p2 = Prompt.objects.create(
        prompt_set=test, external_id="t2", messages=[{"role": "user", "content": "Name a  cat."}]
    )
    System.objects.create(name="claude-april", backend="imported")
    return p1, p2


def write(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_it_matches_by_id_and_by_exact_prompt_text(tmp_path, prompts):
    p1, p2 = prompts
    path = write(
        tmp_path / "r.jsonl",
        [
            {"id": "t1", "response": "Rayleigh scattering.", "completion_tokens": 3},
            {
                "instruction": "Name a cat.",
                "output": "Miso",
                "generator": "claude",
            },  # AlpacaEval style, spacing differs
        ],
    )
    call_command("import_responses", path, system="claude-april")
    assert Response.objects.get(prompt=p1).text == "Rayleigh scattering."
    assert Response.objects.get(prompt=p1).completion_tokens == 3
    assert Response.objects.get(prompt=p2).text == "Miso"
    assert Response.objects.get(prompt=p2).finish_reason == "imported"


def test_unmatched_responses_are_listed_not_silently_dropped(tmp_path, prompts, capsys):
    path = write(
        tmp_path / "r.jsonl",
        [
            {"id": "t1", "response": "ok"},
            {"prompt": "A prompt we never had", "response": "lost?"},
        ],
    )
    call_command("import_responses", path, system="claude-april")
    err = capsys.readouterr().err
    assert "1 response(s) matched no prompt" in err
    assert f"{path}:2: 'A prompt we never had'" in err
    assert Response.objects.count() == 1


def test_strict_mode_imports_nothing_when_something_is_unmatched(tmp_path, prompts):
    path = write(tmp_path / "r.jsonl", [{"id": "t1", "response": "ok"}, {"id": "t9", "response": "?"}])
    with pytest.raises(CommandError, match=r"1 response\(s\) match no prompt"):
        call_command("import_responses", path, system="claude-april", strict=True)
    assert not Response.objects.exists()


def test_reimport_creates_no_duplicates_and_updates_changed_text(tmp_path, prompts, capsys):
    path = write(tmp_path / "r.jsonl", [{"id": "t1", "response": "v1"}, {"id": "t2", "response": "x"}])
    call_command("import_responses", path, system="claude-april")
    call_command("import_responses", path, system="claude-april")
    assert "0 created, 0 updated, 2 unchanged" in capsys.readouterr().out
    write(path, [{"id": "t1", "response": "v2"}, {"id": "t2", "response": "x"}])
    call_command("import_responses", path, system="claude-april")
    assert Response.objects.count() == 2
    assert Response.objects.get(prompt__external_id="t1").text == "v2"


def test_a_malformed_line_names_file_and_line_and_keeps_nothing(tmp_path, prompts):
    path = write(tmp_path / "r.jsonl", [{"id": "t1", "response": "ok"}, {"id": "t2"}])
    with pytest.raises(CommandError) as excinfo:
        call_command("import_responses", path, system="claude-april")
    assert str(excinfo.value) == f"{path}:2: missing the response text ('response', 'output' or 'text')"
    assert not Response.objects.exists()


def test_two_answers_to_the_same_prompt_and_sample_are_refused(tmp_path, prompts):
    path = write(
        tmp_path / "r.jsonl", [{"id": "t1", "response": "a"}, {"prompt": "Why is the sky blue?", "response": "b"}]
    )
    with pytest.raises(CommandError, match=r"r\.jsonl:2: a second response to the same prompt"):
        call_command("import_responses", path, system="claude-april")
    assert not Response.objects.exists()


def test_an_unknown_system_is_a_clear_error(tmp_path, prompts):
    path = write(tmp_path / "r.jsonl", [{"id": "t1", "response": "a"}])
    with pytest.raises(CommandError, match="no system named 'gpt-5'.*claude-april"):
        call_command("import_responses", path, system="gpt-5")


def test_an_id_in_two_sets_needs_set(tmp_path, prompts):
    other = PromptSet.objects.create(name="other")
    Prompt.objects.create(prompt_set=other, external_id="t1", messages=[{"role": "user", "content": "x"}])
    path = write(tmp_path / "r.jsonl", [{"id": "t1", "response": "a"}])
    with pytest.raises(CommandError, match="several sets.*use --set"):
        call_command("import_responses", path, system="claude-april")
    call_command("import_responses", path, system="claude-april", set_name="other")
    assert Response.objects.get().prompt.prompt_set == other


def test_the_database_refuses_a_second_response_for_the_same_sample(prompts):
    p1, _ = prompts
    system = System.objects.get(name="claude-april")
    Response.objects.create(system=system, prompt=p1, sample_index=0, text="one")
    Response.objects.create(system=system, prompt=p1, sample_index=1, text="another sample is fine")
    with pytest.raises(IntegrityError), transaction.atomic():
        Response.objects.create(system=system, prompt=p1, sample_index=0, text="two")
    assert Response.objects.filter(prompt=p1).count() == 2


def test_a_response_inside_a_study_does_not_change_under_its_annotators(tmp_path):
    """Re-importing other texts for responses a study holds is refused, with the studies, and
    nothing is written; people and the judge never see different texts for one comparison."""
    from evalsite.annotation.models import Comparison
    from tests.annotation_fixtures import make_study

    study, _ = make_study(n_prompts=2, baselines=("alpaca-65b",))
    shown = Comparison.objects.filter(study=study).first().baseline_response
    shown.rendered_html()
    path = tmp_path / "again.jsonl"
    rows = [{"id": "p0", "response": "A new text."}, {"id": "p1", "response": "Another."}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(CommandError) as excinfo:
        call_command("import_responses", str(path), system="alpaca-65b", set_name=f"{study.name}-prompts")
    message = str(excinfo.value)
    assert "2 response(s) would change inside a study" in message
    assert f"{path}:1: prompt 'p0': held by study {study.name} (open)" in message
    assert not Response.objects.filter(text__in=["A new text.", "Another."]).exists()
    # a response no study holds may change; its page is rendered again from the new text
    study.status = "draft"
    study.save(update_fields=["status"])
    call_command("import_responses", str(path), system="alpaca-65b", set_name=f"{study.name}-prompts")
    shown.refresh_from_db()
    assert shown.text in ("A new text.", "Another.") and shown.html is None
