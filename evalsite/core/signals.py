"""Worker start-up: take back the jobs this node was running when it died, sweep, and take the
workflows on (a job may have ended while no worker was there to advance them)."""

import logging
import threading

from celery.signals import worker_ready, worker_shutting_down
from django.db import connection
from django.dispatch import receiver

from evalsite.core import jobs, workflows

log = logging.getLogger(__name__)


@worker_ready.connect
def recover_jobs_on_start(sender=None, **kwargs) -> None:
    hostname = getattr(sender, "hostname", None)
    try:
        orphans = jobs.requeue_orphans_of(hostname) if hostname else []
        swept = jobs.sweep_stale_jobs()
        workflows.advance_running()
    except Exception:  # a worker must still start when the database is briefly unreachable
        log.exception("job recovery at worker start failed; the periodic sweep will retry")
        return
    if orphans or swept:
        log.warning("re-enqueued at start: %s", orphans + swept)


@receiver(jobs.job_ended)
def advance_workflows_when_a_job_ends(sender=None, label: str = "", pk: int = 0, **kwargs) -> None:
    workflows.job_ended(label, pk)


@worker_shutting_down.connect
def release_jobs_on_shutdown(sender=None, how=None, **kwargs) -> None:
    """A warm shutdown (SIGTERM, a deploy): this node's running jobs stop at their next unit of
    work and go back to the queue for another worker, instead of the shutdown waiting for whole
    jobs until the supervisor's SIGKILL. The flag goes to the job rows (the pool's child processes
    read it there) from a thread of its own (this runs in a signal handler, maybe in the middle of
    the main thread's own query)."""
    if how != "Warm" or not sender:
        return
    jobs.SHUTTING_DOWN.set()

    def flag() -> None:
        try:
            for model in jobs.job_models():
                model.objects.filter(status=jobs.JobStatus.RUNNING, worker=str(sender)).update(release_requested=True)
        except Exception:  # noqa: BLE001  (the database may be down too: the jobs then stop with it)
            log.exception("could not ask this node's jobs to stop")
        finally:
            connection.close()

    thread = threading.Thread(target=flag, name="release-jobs", daemon=True)
    thread.start()
    thread.join(timeout=10)
