"""Drill: the broker (a private redis-server on its own port, never the shared one) is restarted,
empty, while a worker runs a generation job. The running job finishes; the worker reconnects; a
job started after the restart runs too; and one started while Redis was down is sent by the sweep
once it is back."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time

import pytest

from evalsite.answering.models import GenerationJob
from evalsite.core import jobs
from evalsite.core.jobs import JobStatus
from tests.conftest import ROOT, free_port, shared_database_url, wait_until
from tests.openai_stub import OpenAIStub
from tests.test_generation_jobs import api_system, make_set


def start_redis(port: int) -> subprocess.Popen:
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc
        time.sleep(0.1)
    raise RuntimeError("redis-server did not start")


def manage(broker: str, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, DATABASE_URL=shared_database_url(), CELERY_BROKER_URL=broker)
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)  # fmt: skip


@pytest.mark.django_db(transaction=True)
def test_jobs_survive_a_broker_restart(workers):
    if not shutil.which("redis-server"):
        pytest.skip("redis-server is not installed")
    port = free_port()
    broker = f"redis://127.0.0.1:{port}/0"
    redis = start_redis(port)
    try:
        with OpenAIStub(latency=0.25) as stub:
            first, second, third = (make_set(name=n, n=12, prefix=n) for n in ("one", "two", "three"))
            api_system(stub, concurrency=1)
            workers("w1", queues="generation", env_overrides={"CELERY_BROKER_URL": broker})
            assert manage(broker, "generate", "--system", "api", "--prompts", "one").returncode == 0
            running = GenerationJob.objects.get(prompt_set=first)
            wait_until(lambda: GenerationJob.objects.get(pk=running.pk).progress_done >= 3, timeout=60, message="3")
            redis.terminate()
            redis.wait(timeout=10)
            down = manage(broker, "generate", "--system", "api", "--prompts", "two")  # while it is down
            redis = start_redis(port)  # empty: whatever it held is gone
            running = jobs.wait_for(running, timeout=120)
            sweep = "from evalsite.core.jobs import sweep_stale_jobs; print(len(sweep_stale_jobs()))"
            sent = manage(broker, "shell", "--no-imports", "-c", sweep)
            waiting = jobs.wait_for(GenerationJob.objects.get(prompt_set=second), timeout=120)
            assert manage(broker, "generate", "--system", "api", "--prompts", "three").returncode == 0
            after = jobs.wait_for(GenerationJob.objects.get(prompt_set=third), timeout=120)
    finally:
        redis.terminate()
        redis.wait(timeout=10)
    print(
        f"drill: Redis restarted empty mid-job; the running job ended {running.status} "
        f"({running.system.responses.filter(prompt__prompt_set=first).count()}/12); the job started while it was "
        f"down was sent by the sweep ({sent.stdout.strip()} sent) and ended {waiting.status}; "
        f"a job started after ended {after.status}"
    )
    assert "the broker cannot be reached" in down.stderr and "Traceback" not in down.stderr
    assert running.status == waiting.status == after.status == JobStatus.DONE
    assert running.system.responses.count() == 36, "every response of the three jobs, once"
