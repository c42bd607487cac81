from celery import shared_task
from django.db import connection

from evalsite.core import jobs


@shared_task(name=jobs.RUN_JOB_TASK, bind=True, acks_late=False, ignore_result=True)
def run_job(self, label: str, pk: int) -> str:
    """Run any Job model's row. Returns early when the job is not queued (done, running
    elsewhere, cancelled): messages may be repeated without harm."""
    return jobs.execute(label, pk, worker=self.request.hostname or "worker")


@shared_task(name="core.sweep_stale_jobs", ignore_result=True)
def sweep_stale_jobs() -> int:
    return len(jobs.sweep_stale_jobs())


@shared_task(name="core.advance_workflows", ignore_result=True)
def advance_workflows() -> int:
    """Beat's sweep of the workflows (evalsite/core/workflows.py): one whose job ended while no
    worker could advance it (killed between the two, the database away) goes on within a period."""
    from evalsite.core import workflows

    return workflows.advance_running()


@shared_task(name="core.ping")
def ping(value: str = "pong") -> dict:
    """A round trip through broker, worker and result backend (used by doctor and tests)."""
    return {"value": value, "database": connection.vendor}
