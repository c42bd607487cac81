"""Generation jobs: real workers, the real broker, a real local OpenAI-compatible server."""

import pytest
from django.core.management import CommandError, call_command
from django.db.models import Count

from evalsite.answering.models import GenerationJob
from evalsite.catalog.models import Prompt, PromptSet, Response, System
from evalsite.core import jobs
from evalsite.core.jobs import JobStatus
from tests.conftest import wait_until
from tests.openai_stub import OpenAIStub, Reply
from tests.tiny_models import save_tiny


def make_set(name="set", n=5, prefix="q"):
    prompt_set = PromptSet.objects.create(name=name)
    for i in range(n):
        Prompt.objects.create(
            prompt_set=prompt_set, external_id=f"{prefix}{i}", messages=[{"role": "user", "content": f"{prefix} {i}"}]
        )
    return prompt_set


def api_system(stub, name="api", **extra):
    config = {"base_url": stub.url, "model": "m", "concurrency": 2, "timeout": 5, "max_retries": 1, **extra}
    return System.objects.create(name=name, backend="openai_compat", backend_config=config)


def test_a_job_on_a_worker_writes_every_response_and_records_failures(workers, transactional_db):
    with OpenAIStub() as stub:
        stub.script("q 3", Reply(status=500))
        prompt_set = make_set()
        api_system(stub)
        workers("w1")
        call_command("generate", system="api", prompts="set", wait=True)
    job = GenerationJob.objects.get()
    assert job.status == JobStatus.DONE and job.status_detail == "4/5 responses, 1 failed"
    assert job.failures == [{"prompt": "q3", "sample": 0, "error": "gave up after 2 attempts: HTTP 500: scripted 500"}]
    texts = dict(Response.objects.values_list("prompt__external_id", "text"))
    assert texts == {f"q{i}": f"Answer to: q {i}" for i in (0, 1, 2, 4)}
    assert job.progress_done == 4 and job.progress_total == 5
    assert stub.calls["q 3"] == 2 and sum(stub.calls.values()) == 6, (
        "each prompt asked once, the failing one retried once"
    )
    assert prompt_set.prompts.count() == 5


def test_a_second_run_generates_only_the_missing_responses(transactional_db):
    with OpenAIStub() as stub:
        stub.script("q 1", Reply(status=500), Reply(status=500), Reply())  # fails twice, then recovers
        make_set(n=3)
        api_system(stub)
        call_command("generate", system="api", prompts="set", foreground=True)
        assert Response.objects.count() == 2
        call_command("generate", system="api", prompts="set", foreground=True)
    assert Response.objects.count() == 3
    assert stub.calls == {"q 0": 1, "q 1": 3, "q 2": 1}
    assert GenerationJob.objects.order_by("pk").last().failures == []


def test_a_killed_worker_mid_job_leaves_every_response_exactly_once(workers, transactional_db):
    with OpenAIStub(latency=0.25) as stub:
        make_set(n=24)
        api_system(stub, concurrency=1)
        worker = workers("w1")
        call_command("generate", system="api", prompts="set", samples=1)
        job = GenerationJob.objects.get()
        wait_until(lambda: 4 <= Response.objects.count(), timeout=60, message="some responses")
        worker.kill()
        partial = Response.objects.count()
        assert partial < 24
        workers("w1")  # restarted under the same name, it takes its orphaned job back
        job = jobs.wait_for(job, timeout=120)
    assert job.status == JobStatus.DONE and job.attempts == 2
    counts = Response.objects.values("prompt_id", "sample_index").annotate(n=Count("id"))
    assert len(counts) == 24 and {row["n"] for row in counts} == {1}
    assert sum(stub.calls.values()) < 24 + 4, "only the chunk in flight at the kill was asked again"


def test_samples_per_prompt_gives_distinct_sample_indexes(transactional_db):
    with OpenAIStub() as stub:
        make_set(n=2)
        api_system(stub)
        call_command("generate", system="api", prompts="set", samples=3, foreground=True)
    rows = sorted(Response.objects.values_list("prompt__external_id", "sample_index"))
    assert rows == [("q0", 0), ("q0", 1), ("q0", 2), ("q1", 0), ("q1", 1), ("q1", 2)]


def test_a_running_job_can_be_cancelled_and_keeps_what_it_wrote(workers, transactional_db):
    with OpenAIStub(latency=0.3) as stub:
        make_set(n=30)
        api_system(stub, concurrency=1)
        workers("w1")
        call_command("generate", system="api", prompts="set")
        job = GenerationJob.objects.get()
        wait_until(lambda: Response.objects.count() >= 2, timeout=60, message="2 responses")
        job.request_cancel()
        job = jobs.wait_for(job, timeout=60)
    assert job.status == JobStatus.CANCELLED
    assert 2 <= Response.objects.count() < 30


def test_an_imported_system_only_reports_the_prompts_lacking_a_response(transactional_db):
    prompt_set = make_set(n=3)
    system = System.objects.create(name="claude", backend="imported")
    Response.objects.create(system=system, prompt=prompt_set.prompts.get(external_id="q1"), text="imported")
    call_command("generate", system="claude", prompts="set", foreground=True)
    job = GenerationJob.objects.get()
    assert job.status == JobStatus.DONE
    assert [f["prompt"] for f in job.failures] == ["q0", "q2"]
    assert job.failures[0]["error"] == "no imported response"


def test_hf_local_jobs_run_in_the_foreground_with_a_tiny_model(tmp_path, transactional_db):
    folder = save_tiny(tmp_path / "tiny")
    make_set(n=4)
    System.objects.create(
        name="tiny",
        backend="hf_local",
        backend_config={"model_path": str(folder)},
        sampling={"max_new_tokens": 5, "temperature": 0},
    )
    call_command("generate", system="tiny", prompts="set", foreground=True)
    job = GenerationJob.objects.get()
    assert job.status == JobStatus.DONE and Response.objects.count() == 4
    assert job.tokens_generated == sum(Response.objects.values_list("completion_tokens", flat=True))
    assert job.rate_unit == "tokens/s"


@pytest.mark.django_db
@pytest.mark.parametrize(
    "system, prompts, message",
    [
        ("nope", "set", "no system named 'nope'"),
        ("api-down", "nope", "no prompt set named 'nope' \\(sets: set\\)"),
        ("api-down", "set", "system api-down: openai_compat: nothing answers at http://127.0.0.1:9/v1"),
        ("lost-model", "set", "system lost-model: hf_local: model_path /no/such/model does not exist"),
        ("bad-config", "set", "system bad-config: openai_compat: model is required"),
    ],
)
def test_bad_input_is_reported_before_anything_is_enqueued(system, prompts, message):
    make_set(n=1)
    System.objects.create(
        name="api-down", backend="openai_compat", backend_config={"base_url": "http://127.0.0.1:9/v1", "model": "m"}
    )
    System.objects.create(name="lost-model", backend="hf_local", backend_config={"model_path": "/no/such/model"})
    System.objects.create(name="bad-config", backend="openai_compat", backend_config={"base_url": "http://x/v1"})
    with pytest.raises(CommandError, match=message):
        call_command("generate", system=system, prompts=prompts)
    assert not GenerationJob.objects.exists()


@pytest.mark.django_db
def test_a_second_request_joins_the_active_job(capsys):
    with OpenAIStub() as stub:
        make_set(n=1)
        api_system(stub)
        call_command("generate", system="api", prompts="set")
        call_command("generate", system="api", prompts="set")
    assert GenerationJob.objects.count() == 1
    assert "already running" in capsys.readouterr().out


def test_follow_ups_are_asked_after_the_systems_own_previous_answer(transactional_db):
    """MT-bench's second turns: the second question goes out with the system's own first answer
    before it; a follow-up that fails is asked again by the next run, and nothing twice."""
    with OpenAIStub() as stub:
        stub.script("and then two?", Reply(status=500), Reply(status=500), Reply())
        prompt_set = PromptSet.objects.create(name="mt")
        Prompt.objects.create(
            prompt_set=prompt_set,
            external_id="81",
            messages=[{"role": "user", "content": "first one"}],
            follow_ups=["and then two?", "three?"],
        )
        Prompt.objects.create(prompt_set=prompt_set, external_id="82", messages=[{"role": "user", "content": "alone"}])
        api_system(stub)
        call_command("generate", system="api", prompts="mt", foreground=True)
        response = Response.objects.get(prompt__external_id="81")
        assert response.text == "Answer to: first one" and response.turns == []
        assert GenerationJob.objects.get().failures[0]["error"].startswith("follow-up 1: gave up after 2 attempts")
        call_command("generate", system="api", prompts="mt", foreground=True)
        second = [b for b in stub.bodies if b["messages"][-1]["content"] == "and then two?"][-1]
        third = [b for b in stub.bodies if b["messages"][-1]["content"] == "three?"]
    assert [m["content"] for m in second["messages"]] == ["first one", "Answer to: first one", "and then two?"]
    assert GenerationJob.objects.order_by("pk").last().failures == [] and len(third) == 1
    assert [m["role"] for m in third[0]["messages"]] == ["user", "assistant"] * 2 + ["user"]
    assert third[0]["messages"][3]["content"] == "Answer to: and then two?"
    response.refresh_from_db()
    assert [(t["user"], t["assistant"]) for t in response.turns] == [
        ("and then two?", "Answer to: and then two?"),
        ("three?", "Answer to: three?"),
    ]
    assert stub.calls == {"first one": 1, "alone": 1, "and then two?": 3, "three?": 1}
    assert Response.objects.get(prompt__external_id="82").turns == []
