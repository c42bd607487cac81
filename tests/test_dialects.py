"""OpenAI-compatible servers as they really are: OpenAI refuses fields it does not know, llama.cpp
reads repeat_penalty, vLLM repetition_penalty, TGI a shifted presence_penalty. Generation and
judging run against a stub of each (tests/openai_stub.py says where each quirk comes from); the
LIMA sampling is honoured where the server can, and recorded where it cannot."""

from __future__ import annotations

import pytest
from bs4 import BeautifulSoup
from django.core.management import CommandError, call_command

from evalsite.answering.models import GenerationJob
from evalsite.catalog.models import Prompt, PromptSet, Response, System
from evalsite.judging.models import JudgeConfig, JudgeJob
from evalsite.judging.services import preflight
from generation import dialects
from generation.config import ConfigError, SamplingConfig
from generation.openai_compat import OpenAICompatBackend, api_key_from_env
from generation.types import GenerationRequest
from tests.judge_fixtures import fair_judge, judge_config, judged_study
from tests.openai_stub import OpenAIStub

LIMA = SamplingConfig()  # the paper's sampling: repetition penalty 1.2


def generate(stub: OpenAIStub, **config) -> list:
    backend = OpenAICompatBackend({"base_url": stub.url, "model": "m", "timeout": 5, **config})
    requests = [GenerationRequest(key=i, messages=[{"role": "user", "content": f"q{i}"}]) for i in range(3)]
    return list(backend.generate(requests, LIMA))


def test_the_old_way_of_sending_the_penalty_is_what_openai_refuses():
    """What broke every GPT-4 baseline: repetition_penalty in the body is a 400 from OpenAI."""
    with OpenAIStub(dialect="openai") as stub:
        results = generate(stub, dialect="vllm", max_retries=0)
    assert all(not r.ok for r in results)
    assert "Unrecognized request argument supplied: repetition_penalty" in results[0].error


@pytest.mark.parametrize(
    "dialect, penalty, note",
    [
        ("openai", 1.0, "repetition penalty 1.2: not supported by OpenAI, not sent"),
        ("vllm", 1.2, "sent as repetition_penalty"),
        ("llamacpp", 1.2, "sent as repeat_penalty"),
        ("tgi", 1.2, "sent as presence_penalty -0.80"),
        ("generic", 1.0, "repetition penalty 1.2: not supported by this server, not sent"),
    ],
)
def test_each_server_gets_the_penalty_under_its_own_name_or_a_note_says_it_did_not(dialect, penalty, note):
    with OpenAIStub(dialect=dialect) as stub:
        results = generate(stub, dialect=dialect)
    assert all(r.ok for r in results), results[0].error
    assert stub.penalties == pytest.approx([penalty] * 3)
    assert note in results[0].metadata["sampling_notes"][0]
    assert results[0].metadata["dialect"] == dialect


def test_llamacpp_ignores_the_name_vllm_uses():
    with OpenAIStub(dialect="llamacpp") as stub:
        generate(stub, dialect="vllm")
    assert stub.penalties == [1.0, 1.0, 1.0], "llama.cpp silently ignores repetition_penalty"


@pytest.mark.parametrize("dialect", ["vllm", "llamacpp", "tgi", "generic"])
def test_auto_detects_the_server_from_what_it_says_of_itself(dialect):
    with OpenAIStub(dialect=dialect) as stub:
        assert dialects.detect(stub.url) == dialect
        results = generate(stub)  # no dialect configured: auto
    assert results[0].metadata["dialect"] == dialect
    assert dialects.detect("https://api.openai.com/v1") == "openai"  # by its host, without asking
    assert dialects.dialect_of_models({"data": [{"id": "x", "owned_by": "me", "permissions": []}]}) == "llamacpp"


def test_an_openai_key_goes_only_where_it_was_named(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret")
    monkeypatch.setenv("VLLM_KEY", "vllm-token")
    with OpenAIStub(dialect="vllm") as stub:
        generate(stub)
        assert "Bearer sk-secret" not in stub.authorizations, "the OpenAI key must not reach another server"
        assert set(stub.authorizations) <= {"Bearer no-key", None}
        stub.authorizations.clear()
        generate(stub, api_key_env="VLLM_KEY")
        assert set(stub.authorizations) == {"Bearer vllm-token"}
    assert api_key_from_env(None, "https://api.openai.com/v1") == "sk-secret"
    monkeypatch.delenv("OPENAI_API_KEY")
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        api_key_from_env(None, "https://api.openai.com/v1")


def test_the_completions_api_stops_at_the_next_turn_and_trims():
    def chatty(body: dict) -> str:
        return "  \n The answer is 4.\nUser: and what about 5?\nAssistant: 5 is" if "2+2" in body["prompt"] else ""

    with OpenAIStub(responder=chatty, dialect="vllm") as stub:
        backend = OpenAICompatBackend({"base_url": stub.url, "model": "m", "api": "completions"})
        requests = [
            GenerationRequest(key="math", messages=[{"role": "user", "content": "2+2?"}]),
            GenerationRequest(key="empty", messages=[{"role": "user", "content": "nothing"}]),
        ]
        results = {r.key: r for r in backend.generate(requests, LIMA)}
    assert stub.bodies[0]["stop"] == ["\nUser:", "\nSystem:"]
    assert results["math"].text == "The answer is 4." and results["math"].notes == ""
    assert results["empty"].ok and results["empty"].text == "" and results["empty"].notes == "empty response"


@pytest.mark.django_db
def test_a_system_records_and_shows_what_its_server_is_not_sent(tmp_path, capsys, staff_client):
    with OpenAIStub(dialect="openai", responder=lambda body: "" if "blank" in str(body) else "ok") as stub:
        call_command(
            "systems", "add", "gpt-4", "--backend", "openai_compat", "--base-url", stub.url, "--model", "gpt-4",
            "--dialect", "openai",
        )  # fmt: skip
        out = capsys.readouterr().out
        assert "sampling: repetition penalty 1.2: not supported by OpenAI, not sent" in out
        prompt_set = PromptSet.objects.create(name="s")
        for i, text in enumerate(["hello", "blank please"]):
            messages = [{"role": "user", "content": text}]
            Prompt.objects.create(prompt_set=prompt_set, external_id=str(i), messages=messages)
        call_command("generate", "--system", "gpt-4", "--prompts", "s", "--foreground")
    assert Response.objects.filter(system__name="gpt-4").count() == 2
    job = GenerationJob.objects.get()
    page = staff_client.get(f"/generation/jobs/{job.pk}/")
    soup = BeautifulSoup(page.content, "html.parser")
    assert [li.get_text() for li in soup.select("ul.sampling-notes li")] == [
        "repetition penalty 1.2: not supported by OpenAI, not sent"
    ]
    rows = soup.select("table.empty-responses tr")[1:]
    assert [r.find("td").get_text() for r in rows] == ["1"]


@pytest.mark.django_db
def test_systems_edit_changes_only_what_is_given(capsys):
    with OpenAIStub(dialect="llamacpp") as stub:
        call_command("systems", "add", "local", "--backend", "openai_compat", "--base-url", stub.url, "--model", "m")
        assert System.objects.get(name="local").backend_config["dialect"] == "llamacpp"  # auto, detected
        call_command("systems", "edit", "local", "--sampling", '{"max_new_tokens": 64}', "--concurrency", "2")
    system = System.objects.get(name="local")
    assert system.backend_config["concurrency"] == 2 and system.backend_config["model"] == "m"
    assert system.sampling_config.max_new_tokens == 64 and system.sampling_config.repetition_penalty == 1.2
    with pytest.raises(CommandError, match="nothing to change"):
        call_command("systems", "edit", "local")
    with pytest.raises(CommandError, match="no system named 'nope'"):
        call_command("systems", "edit", "nope", "--model", "x")


@pytest.mark.django_db
def test_a_local_judge_needs_no_key_and_can_be_edited_and_removed(monkeypatch, capsys):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with OpenAIStub(dialect="llamacpp") as stub:
        call_command("judge_config", "add", "local", "--model", "smol", "--base-url", stub.url, "--local")
        config = JudgeConfig.objects.get(name="local")
        assert config.api_key_env == "" and config.dialect == "auto"
        preflight(config)  # no key needed, no error
        call_command("judge_config", "edit", "local", "--max-tokens", "32", "--dialect", "llamacpp")
    config.refresh_from_db()
    assert (config.max_tokens, config.dialect, config.model) == (32, "llamacpp", "smol")
    call_command("judge_config", "add", "gpt4", "--model", "gpt-4")  # OpenAI's host: its key, when judging
    with pytest.raises(CommandError, match="exists"):
        call_command("judge_config", "add", "gpt4")
    call_command("judge_config", "remove", "gpt4")
    assert not JudgeConfig.objects.filter(name="gpt4").exists()
    with pytest.raises(CommandError, match="no judge config named 'gpt4'"):
        call_command("judge_config", "edit", "gpt4", "--model", "x")


@pytest.mark.django_db
def test_a_judge_with_jobs_cannot_be_removed():
    with OpenAIStub(responder=fair_judge) as stub:
        config = judge_config(stub)
        JudgeJob.objects.create(study=judged_study(), config=config)
    with pytest.raises(CommandError, match="has 1 judge job"):
        call_command("judge_config", "remove", config.name)


@pytest.mark.django_db
@pytest.mark.parametrize("dialect", ["openai", "vllm", "llamacpp", "tgi"])
def test_judging_works_against_each_server(dialect):
    with OpenAIStub(responder=fair_judge, dialect=dialect) as stub:
        study = judged_study(n_prompts=2)
        config = judge_config(stub, dialect=dialect)
        call_command("judge", "--study", study.name, "--config", config.name, "--yes", "--foreground")
    job = JudgeJob.objects.get()
    assert job.status == "done" and job.calls_made == 4
    assert all(set(body) <= dialects.OPENAI_CHAT_FIELDS for body in stub.bodies)
