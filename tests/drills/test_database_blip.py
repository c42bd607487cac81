"""Drill: the database drops a worker's connections in the middle of a job (as a restarted
server or a failover does). The job rides it out (reconnects, goes on where it was, keeps its
lease) and finishes with every row written once, instead of ending "failed" at 40/183."""

from __future__ import annotations

import time

import pytest
from django.db import connection

from evalsite.answering.models import GenerationJob
from evalsite.core import jobs
from evalsite.core.jobs import JobStatus
from tests.conftest import wait_until
from tests.openai_stub import OpenAIStub
from tests.test_generation_jobs import api_system, make_set


def terminate_other_connections() -> int:
    """pg_terminate_backend on every other connection to this test database (never another one)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0]


@pytest.mark.django_db(transaction=True)
def test_a_generation_job_finishes_through_killed_database_connections(workers):
    if connection.vendor != "postgresql":
        pytest.skip("pg_terminate_backend needs PostgreSQL")
    with OpenAIStub(latency=0.15) as stub:
        prompt_set = make_set(n=24)
        system = api_system(stub, concurrency=2)
        worker = workers("w1", queues="generation")
        job = GenerationJob.objects.create(system=system, prompt_set=prompt_set)
        job.enqueue()
        wait_until(lambda: GenerationJob.objects.get().progress_done >= 4, timeout=60, message="4 responses")
        killed = 0
        for _ in range(2):  # twice: a second blip in the same run
            killed += terminate_other_connections()
            time.sleep(0.6)
        job = jobs.wait_for(job, timeout=120)
    print(f"drill: killed {killed} connections of the worker mid-job; the job ended {job.status}")
    assert killed >= 1
    assert job.status == JobStatus.DONE, job.error
    assert job.system.responses.count() == 24 and job.attempts == 1, "one attempt, every response once"
    assert "database error" in worker.output()
