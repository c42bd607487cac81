"""`manage.py serve_openai` with a tiny model, and a judge job through it end to end: the same
openai-client code path as GPT-4."""

import os
import subprocess
import sys
import time

import pytest
import requests

from evalsite.core import jobs
from evalsite.core.jobs import JobStatus
from evalsite.judging import services
from evalsite.judging.models import JudgeCall, JudgeConfig, JudgeVerdict
from tests.conftest import ROOT, free_port, shared_database_url
from tests.judge_fixtures import judged_study
from tests.tiny_models import save_tiny


@pytest.fixture
def local_server(tmp_path, transactional_db):
    folder = save_tiny(tmp_path / "tiny")
    port = free_port()
    env = dict(os.environ, DATABASE_URL=shared_database_url(), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [
            sys.executable,
            "manage.py",
            "serve_openai",
            "--model-path",
            str(folder),
            "--name",
            "tiny",
            "--port",
            str(port),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{url}/models", timeout=1).status_code == 200:
                break
        except requests.RequestException:
            if proc.poll() is not None:
                raise RuntimeError(proc.stdout.read().decode()) from None
            time.sleep(0.3)
    yield url
    proc.terminate()
    proc.wait(timeout=20)


def test_the_local_server_speaks_the_chat_completions_protocol(local_server):
    from openai import OpenAI

    client = OpenAI(base_url=local_server, api_key="unused", max_retries=0)
    assert [m.id for m in client.models.list()] == ["tiny"]
    reply = client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "hello"}], temperature=0, max_tokens=5
    )
    assert reply.choices[0].finish_reason in ("stop", "length") and reply.usage.completion_tokens <= 5
    bad = requests.post(f"{local_server}/chat/completions", json={"model": "tiny"}, timeout=10)
    assert bad.status_code == 400 and "messages" in bad.json()["error"]["message"]


def test_a_judge_job_runs_end_to_end_through_the_local_server(local_server):
    study = judged_study(n_prompts=2)
    config = JudgeConfig.objects.create(
        name="local", model="tiny", base_url=local_server, api_key_env="", is_local=True, max_tokens=8, concurrency=2
    )
    job, _ = services.start_judge_job(study, config, enqueue=False)
    jobs.execute(job.label(), job.pk, worker="test")
    job.refresh_from_db()
    assert job.status == JobStatus.DONE
    assert JudgeVerdict.objects.filter(job=job).count() == 4
    calls = JudgeCall.objects.all()
    assert calls.count() == 4 and all(c.status == "done" and c.error == "" for c in calls)
    # a tiny random model rarely says one of the three sentences: unreadable answers are failures, not ties
    for verdict in JudgeVerdict.objects.filter(job=job).select_related("call"):
        assert (verdict.outcome == "") == (verdict.call.verdict == "")
    assert config.label == "local (local judge)"
