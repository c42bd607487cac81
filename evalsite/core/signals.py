"""Worker start-up: take back the jobs this node was running when it died, then sweep."""

import logging

from celery.signals import worker_ready

from evalsite.core import jobs

log = logging.getLogger(__name__)


@worker_ready.connect
def recover_jobs_on_start(sender=None, **kwargs) -> None:
    hostname = getattr(sender, "hostname", None)
    try:
        orphans = jobs.requeue_orphans_of(hostname) if hostname else []
        swept = jobs.sweep_stale_jobs()
    except Exception:  # a worker must still start when the database is briefly unreachable
        log.exception("job recovery at worker start failed; the periodic sweep will retry")
        return
    if orphans or swept:
        log.warning("re-enqueued at start: %s", orphans + swept)
