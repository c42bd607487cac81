"""A broker that cannot be reached: starting a job says so in one line (no traceback), the job
waits with its message marked unsent, and the next command for it, or the sweep, sends it once the
broker is back (not after JOB_RESEND_QUEUED_AFTER_SECONDS)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from evalsite.answering.models import GenerationJob
from evalsite.core.jobs import JobStatus, sweep_stale_jobs
from tests.annotation_fixtures import make_study
from tests.conftest import ROOT, free_port, shared_database_url

pytestmark = pytest.mark.django_db(transaction=True)


def dead_broker() -> str:
    return f"redis://127.0.0.1:{free_port()}/0"


def generate_with_the_broker_down() -> subprocess.CompletedProcess:
    env = dict(os.environ, DATABASE_URL=shared_database_url(), CELERY_BROKER_URL=dead_broker())
    command = [sys.executable, "manage.py", "generate", "--system", "alpaca-65b", "--prompts", "lima-study-prompts"]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_a_job_started_while_the_broker_is_down_is_sent_when_it_is_back():
    make_study(n_prompts=1, baselines=("alpaca-65b",))
    first = generate_with_the_broker_down()
    assert first.returncode == 0, first.stderr
    job = GenerationJob.objects.get()
    assert job.status == JobStatus.QUEUED and job.enqueued_at is None, "marked unsent"
    assert "the broker cannot be reached" in first.stderr and "Traceback" not in first.stderr
    again = generate_with_the_broker_down()  # joins the job and tries to send it again
    assert again.returncode == 0 and GenerationJob.objects.count() == 1
    assert "queued, but the broker cannot be reached" in again.stderr
    assert [pk for _, pk in sweep_stale_jobs()] == [job.pk], "sent at the first sweep once the broker is back"
    job.refresh_from_db()
    assert job.enqueued_at is not None
