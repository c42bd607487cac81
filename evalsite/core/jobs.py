"""Long jobs whose state lives in the database, not in the broker.

Every kind of long job (generation, judging, training, ...) is a model that inherits from
``Job`` and names its runner: ``runner = "evalsite.<app>.runner.<function>"``, a function of
(job, ctx) that does the work, resolved here and nowhere else (``runner_of``; ``registry()`` lists
them all, and a system check imports each). ``Job.objects.start_or_join(...)`` starts one (or
returns the active one with the same identity). One Celery task, ``core.run_job``, runs any of them:

- it *claims* the job with one conditional UPDATE (queued -> running, with a fresh lease token),
  so two messages for the same job never run it twice at once;
- while ``run`` works, a heartbeat thread stamps ``heartbeat_at`` under that lease;
- ``sweep_stale_jobs`` (at worker start and periodically from beat) puts running jobs whose
  heartbeat is stale back to queued and sends their message again, and re-sends queued jobs
  whose message may have been lost. The filesystem broker deletes a message when a worker takes
  it, and Redis redelivers only after its visibility timeout: the sweep is what makes a killed
  worker never mean a lost job.

``run`` must be idempotent (unique constraints on what it writes) and resume from what is
already in the database, because after a crash it starts again from the top.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from datetime import timedelta
from itertools import islice
from typing import Any, ClassVar, TypeVar

from django import db
from django.apps import apps
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import close_old_connections, connection, models, transaction
from django.dispatch import Signal
from django.utils import timezone
from django.utils.module_loading import import_string

from evalsite.celery import app as celery_app

log = logging.getLogger(__name__)


class JobStatus(models.TextChoices):
    QUEUED = "queued", "queued"
    RUNNING = "running", "running"
    DONE = "done", "done"
    FAILED = "failed", "failed"
    CANCELLED = "cancelled", "cancelled"
    STOPPED = "stopped", "stopped"  # stopped on purpose before the end (e.g. budget reached)


ACTIVE_STATUSES = (JobStatus.QUEUED, JobStatus.RUNNING)


class JobCancelled(Exception):
    """Raised inside ``run`` when a cancel was requested; the job ends as cancelled."""


class JobStopped(Exception):
    """Raised inside ``run`` to end a job early on purpose (e.g. its budget is spent); the
    message becomes the job's status detail."""


class LeaseLost(Exception):
    """Raised inside ``run`` when another worker took the job over (our heartbeat went stale)."""


class JobReleased(Exception):
    """Raised inside ``run`` when its worker is shutting down (SIGTERM, a deploy): the job goes
    back to the queue at once for another worker, from where it stopped."""


class DatabaseGone(Exception):
    """The database stayed out of reach longer than JOB_DB_OUTAGE_SECONDS while a job ran."""


class CannotStart(Exception):
    """A job cannot start as asked (an unknown name, a bad setting): says what to fix. Every app's
    own refusals (CannotJudge, TrainingError) are kinds of it."""


class JobQuerySet(models.QuerySet):
    def start_or_join(
        self, *, enqueue: bool = True, defaults: dict | None = None, resume: Iterable[str] = (), **identity
    ) -> tuple[Any, bool]:  # (the queryset's model, as its callers declare it)
        """The one way to start a job: the active job with this identity (fields and values) is
        joined, never doubled; else, with ``resume`` (statuses such as failed), the latest job of
        the same identity in one of them is queued again; else a new one is created with
        ``defaults``. With ``enqueue`` its message goes to the workers when the outermost
        transaction commits (call inside one to finish the row first). Returns (job, started)."""
        with transaction.atomic():
            _lock_identity(self.model, identity)
            mine = self.select_for_update().filter(**identity)
            active = mine.filter(status__in=ACTIVE_STATUSES).first()
            if active:
                if enqueue:
                    active.send_if_unsent()
                return active, False
            job = mine.filter(status__in=list(resume)).order_by("-pk").first() if resume else None
            if job is not None:
                again = {"status": JobStatus.QUEUED, "cancel_requested": False, "finished_at": None, "error": ""}
                self.filter(pk=job.pk).update(**again)
                job.refresh_from_db()
            else:
                job = self.create(**identity, **(defaults or {}))
            if enqueue:
                job.enqueue()
        return job, True


def _lock_identity(model: type[models.Model], identity: dict[str, Any]) -> None:
    """Until the transaction ends, hold a lock on this job identity: two starts of the same job at
    once (the demo's process and a worker advancing one workflow) would otherwise both find no
    active job (FOR UPDATE locks rows, not their absence) and both create one. PostgreSQL: an
    advisory lock keyed by a hash of the identity; SQLite takes its one write lock at BEGIN
    (transaction_mode IMMEDIATE) already."""
    if connection.vendor != "postgresql":
        return
    text = model._meta.label + repr(sorted((k, getattr(v, "pk", v)) for k, v in identity.items()))
    key = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big", signed=True)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [key])


class Job(models.Model):
    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.QUEUED, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)
    enqueued_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0, help_text="How many times a worker claimed it.")
    worker = models.CharField(max_length=200, blank=True, help_text="Celery node that runs or ran it.")
    lease = models.UUIDField(null=True, blank=True, editable=False)
    cancel_requested = models.BooleanField(default=False)
    release_requested = models.BooleanField(
        default=False, help_text="its worker is shutting down: stop at the next unit and go back to the queue"
    )
    progress_done = models.PositiveIntegerField(default=0)
    progress_total = models.PositiveIntegerField(default=0)
    rate = models.FloatField(default=0.0, help_text="Units per second over the current attempt.")
    rate_unit = models.CharField(max_length=20, default="items/s")
    status_detail = models.CharField(max_length=200, blank=True)
    error = models.TextField(blank=True)

    # Subclasses name their runner, a function (job, ctx) in their app's runner.py, and set the
    # Celery queue their work belongs on.
    runner: ClassVar[str] = ""
    queue: ClassVar[str] = "default"
    # What one unit of progress is, for progress bars ("3/24 steps").
    progress_unit: ClassVar[str] = "item"

    objects = JobQuerySet.as_manager()

    class Meta:
        abstract = True

    def run(self, ctx: JobContext) -> None:
        runner_of(type(self))(self, ctx)

    # -- derived values shown by the UI and the CLI ----------------------------------------------
    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    @property
    def fraction_done(self) -> float:
        return self.progress_done / self.progress_total if self.progress_total else 0.0

    @property
    def eta_seconds(self) -> float | None:
        if self.status != JobStatus.RUNNING or not self.started_at or not self.progress_total:
            return None
        remaining = self.progress_total - self.progress_done
        if remaining <= 0:
            return 0.0
        elapsed = (timezone.now() - self.started_at).total_seconds()
        per_item = elapsed / self.progress_done if self.progress_done else None
        return remaining * per_item if per_item else None

    @classmethod
    def label(cls) -> str:
        return cls._meta.label

    # -- lifecycle -------------------------------------------------------------------------------
    def enqueue(self) -> None:
        """Send the job's message once the current transaction commits (never before: a worker
        must find the row)."""
        type(self).objects.filter(pk=self.pk).update(enqueued_at=timezone.now())
        label, pk, queue = self.label(), self.pk, self.queue
        transaction.on_commit(lambda: send_job_message(label, pk, queue))

    def send_if_unsent(self) -> None:
        """A queued job whose message never left (the broker was down) is sent now: a second
        `generate` (or judge, train) does not just join a job that no worker will ever hear of."""
        if self.status == JobStatus.QUEUED and self.enqueued_at is None:
            self.enqueue()

    @property
    def message_unsent(self) -> bool:
        return self.status == JobStatus.QUEUED and self.enqueued_at is None

    def request_cancel(self) -> bool:
        """Ask a job to stop. A queued job ends at once; a running one at its next check."""
        model = type(self)
        now = timezone.now()
        ended = model.objects.filter(pk=self.pk, status=JobStatus.QUEUED).update(
            status=JobStatus.CANCELLED, cancel_requested=True, finished_at=now
        )
        if not ended:
            ended = model.objects.filter(pk=self.pk, status=JobStatus.RUNNING).update(cancel_requested=True)
        self.refresh_from_db()
        return bool(ended)


def job_models() -> list[type[Job]]:
    return [m for m in apps.get_models() if issubclass(m, Job)]


def registry() -> dict[str, str]:
    """Every kind of job and the runner that does its work."""
    return {model.label(): model.runner for model in job_models()}


def find_job(label: str, pk: int) -> Job | None:
    """The job a workflow's step names ("label:pk", Job.label()), if it still exists."""
    return apps.get_model(label)._default_manager.filter(pk=pk).first()


@functools.cache
def runner_of(model: type[Job]) -> Callable[[Job, JobContext], None]:
    if not model.runner:
        raise ImproperlyConfigured(f"{model.label()} names no runner")
    return import_string(model.runner)


def chunked(items: list, size: int) -> Iterator[list]:
    """Work in chunks: a runner checks for a cancel (and reports progress) between them."""
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def send_job_message(label: str, pk: int, queue: str) -> bool:
    """Send "run job N" to its queue. When the broker cannot be reached, say so in one line and
    mark the message unsent (enqueued_at empty): the sweep, or the next command that asks for the
    same job, sends it as soon as the broker is back. The job row is the truth; nothing is lost."""
    try:
        # by name: core.tasks runs what this module defines, and this module imports no task
        celery_app.send_task(RUN_JOB_TASK, args=[label, pk], queue=queue, retry=True, retry_policy=BROKER_RETRY)
        return True
    except Exception as exc:  # noqa: BLE001  (kombu's and the transports' connection errors)
        reason = exc.__class__.__name__
        log.error(
            "%s %s: the broker cannot be reached (%s); the job waits, its message is sent when it is back",
            label,
            pk,
            reason,
        )
        model = next((m for m in job_models() if m.label() == label), None)
        if model is not None:
            model.objects.filter(pk=pk, status=JobStatus.QUEUED).update(enqueued_at=None)
        return False


RUN_JOB_TASK = "core.run_job"
# a broker that does not answer is given about 3 s, not Celery's default of retrying for long
BROKER_RETRY = {"max_retries": 2, "interval_start": 0.5, "interval_step": 1.0, "interval_max": 2.0}


class JobContext:
    """What ``Job.run`` gets: progress reporting and cooperative cancel/lease checks."""

    def __init__(self, job: Job, lease: uuid.UUID):
        self.job = job
        self.lease = lease
        # this run of the job's code: a job run again within the same attempt (after a database
        # outage) tells its own earlier run's leftovers (a reservation whose answer was never
        # stored) from the ones it is making now
        self.run_id = uuid.uuid4().hex[:8]
        self._model = type(job)
        self._started = time.monotonic()
        self._units_at_start: float | None = None

    def _mine(self) -> models.QuerySet:
        return self._model.objects.filter(pk=self.job.pk, lease=self.lease, status=JobStatus.RUNNING)

    def progress(
        self,
        done: int,
        total: int | None = None,
        *,
        units: float | None = None,
        unit: str | None = None,
        detail: str | None = None,
    ) -> None:
        """Record progress (and a heartbeat). ``units`` is a running count (e.g. tokens) for the
        rate; without it the rate is items per second. Raises JobCancelled or LeaseLost."""
        fields: dict = {"progress_done": done, "heartbeat_at": timezone.now()}
        if total is not None:
            fields["progress_total"] = total
        elapsed = max(time.monotonic() - self._started, 1e-6)
        if units is not None:
            if self._units_at_start is None:
                self._units_at_start = units
            fields["rate"] = (units - self._units_at_start) / elapsed
        else:
            fields["rate"] = done / elapsed
        if unit:
            fields["rate_unit"] = unit
        if detail is not None:
            fields["status_detail"] = detail[:200]
        # a restarted database is waited for here (up to JOB_DB_OUTAGE_SECONDS), so that a job does
        # not have to start over (reload its model, say) because a progress note could not be written
        if not patiently(lambda: self._mine().update(**fields)):
            raise LeaseLost(f"{self.job} was taken over by another worker")
        for key, value in fields.items():
            setattr(self.job, key, value)
        self.check()

    def set_total(self, total: int) -> None:
        self._mine().update(progress_total=total)
        self.job.progress_total = total

    def check(self) -> None:
        """Raise JobCancelled if a cancel was requested, JobReleased if the worker is shutting down
        (call between units of work)."""
        mine = self._model.objects.filter(pk=self.job.pk)
        flags = patiently(lambda: mine.values_list("cancel_requested", "release_requested").first())
        if flags and flags[0]:
            raise JobCancelled()
        if (flags and flags[1]) or SHUTTING_DOWN.is_set():
            raise JobReleased()


class Heartbeat(threading.Thread):
    """Stamps heartbeat_at every few seconds while the job's own code is busy (loading a model,
    one long batch), so a live worker is never mistaken for a dead one."""

    def __init__(self, model: type[Job], pk: int, lease: uuid.UUID, every: float):
        super().__init__(daemon=True, name=f"heartbeat-{model._meta.label}-{pk}")
        self.model, self.pk, self.lease, self.every = model, pk, lease, every
        self.stopped = threading.Event()

    def run(self) -> None:
        try:
            while not self.stopped.wait(self.every):
                try:
                    alive = self.model.objects.filter(pk=self.pk, lease=self.lease, status=JobStatus.RUNNING).update(
                        heartbeat_at=timezone.now()
                    )
                except TRANSIENT_DB_ERRORS as exc:  # the database blinked: beat again next time
                    log.warning("heartbeat of %s %s: %s", self.model.label(), self.pk, exc)
                    connection.close()
                    continue
                if not alive:
                    return
        finally:
            connection.close()

    def stop(self) -> None:
        self.stopped.set()
        self.join(timeout=self.every + 5)


def claim(model: type[Job], pk: int, worker: str) -> tuple[Job, uuid.UUID] | None:
    """Take a queued job with one conditional UPDATE. Returns None when it is not ours to run
    (already running elsewhere, finished, cancelled, or gone)."""
    lease = uuid.uuid4()
    now = timezone.now()
    taken = model.objects.filter(pk=pk, status=JobStatus.QUEUED).update(
        status=JobStatus.RUNNING,
        lease=lease,
        worker=worker[:200],
        heartbeat_at=now,
        started_at=now,
        attempts=models.F("attempts") + 1,
        error="",
    )
    if not taken:
        return None
    return model.objects.get(pk=pk), lease


def finish(
    model: type[Job], pk: int, lease: uuid.UUID, status: str, error: str = "", detail: str | None = None
) -> bool:
    fields: dict = {"status": status, "finished_at": timezone.now(), "heartbeat_at": timezone.now(), "error": error}
    if detail is not None:
        fields["status_detail"] = detail[:200]
    return bool(model.objects.filter(pk=pk, lease=lease, status=JobStatus.RUNNING).update(**fields))


TRANSIENT_DB_ERRORS = (db.OperationalError, db.InterfaceError)
# set in a worker process when it starts a warm shutdown (evalsite/core/signals.py): its jobs stop at
# their next unit of work and go back to the queue
SHUTTING_DOWN = threading.Event()


def reconnected(action, attempts: int = 4):
    """Run a database action, reconnecting after a transient error (a restarted server, a killed
    connection) with a short backoff."""
    for attempt in range(attempts):
        try:
            return action()
        except TRANSIENT_DB_ERRORS:
            if attempt == attempts - 1:
                raise
            connection.close()  # Django opens a new connection at the next query
            time.sleep(min(0.5 * 2**attempt, 5.0))
    return None


def wait_for_database(seconds: float) -> bool:
    """Wait, with a backoff of 0.5 s doubling to 5 s, until the database answers again or
    ``seconds`` pass. True when it is back."""
    deadline = time.monotonic() + seconds
    pause = 0.5
    while True:
        try:
            connection.close()
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
            return True
        except TRANSIENT_DB_ERRORS:
            if time.monotonic() + pause > deadline:
                return False
            time.sleep(pause)
            pause = min(pause * 2, 5.0)


def patiently(action):
    """Run a database action, riding out an outage of up to JOB_DB_OUTAGE_SECONDS (a restarted
    server): used where the job holds something the database has not recorded yet (an answer
    that came back), so that it is stored, not asked again."""
    while True:
        try:
            return action()
        except TRANSIENT_DB_ERRORS as exc:
            log.warning("database error (%s): waiting for it to come back", exc)
            if not wait_for_database(settings.JOB_DB_OUTAGE_SECONDS):
                raise DatabaseGone(f"the database was out of reach for {settings.JOB_DB_OUTAGE_SECONDS:.0f} s") from exc


def run_with_reconnects(job: Job, lease: uuid.UUID) -> None:
    """Run the job; a transient database error (a restart, a killed connection) is a pause, not a
    failure: the worker keeps the job's lease, waits for the database (up to
    JOB_DB_OUTAGE_SECONDS, then DatabaseGone) and runs it again from what is already written (jobs
    are resumable). More than JOB_TRANSIENT_RETRIES errors in a row with the database answering
    in between are the job's own, and fail it."""
    failures = 0
    while True:
        try:
            job.run(JobContext(job, lease))
            return
        except TRANSIENT_DB_ERRORS as exc:
            failures += 1
            log.warning("%s %s: database error (%s); waiting for it and going on", job.label(), job.pk, exc)
            if not wait_for_database(settings.JOB_DB_OUTAGE_SECONDS):
                raise DatabaseGone(f"the database was out of reach for {settings.JOB_DB_OUTAGE_SECONDS:.0f} s") from exc
            if failures > settings.JOB_TRANSIENT_RETRIES:
                raise
            reconnected(job.refresh_from_db)


def release(model: type[Job], pk: int, lease: uuid.UUID, why: str) -> bool:
    """Put a job this worker holds back in the queue for another worker, and send its message."""
    released = model.objects.filter(pk=pk, lease=lease, status=JobStatus.RUNNING).update(
        status=JobStatus.QUEUED,
        lease=None,
        release_requested=False,
        enqueued_at=timezone.now(),
        status_detail=why[:200],
    )
    if released:
        send_job_message(model.label(), pk, model.queue)
    return bool(released)


def release_when_back(model: type[Job], pk: int, lease: uuid.UUID) -> threading.Thread:
    """After an outage longer than a job could wait: a thread that releases the job the moment the
    database answers again (up to 10 times the outage allowance), so it is re-enqueued then, not a
    stale sweep later."""

    def run() -> None:
        try:
            if wait_for_database(10 * settings.JOB_DB_OUTAGE_SECONDS):
                release(model, pk, lease, "released after a database outage")
        finally:
            connection.close()

    thread = threading.Thread(target=run, daemon=True, name=f"release-{model.label()}-{pk}")
    thread.start()
    return thread


ENDED = (JobStatus.DONE, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.STOPPED)
# sent by the process that ran a job once it ended (label, pk, status): the workflows go on
# (core/signals.py connects evalsite/core/workflows.py), so the next step of a chain starts
# without anyone waiting
job_ended = Signal()


def execute(label: str, pk: int, worker: str) -> str:
    """Run one job to its end in this process. Used by the Celery task and by ``--foreground``
    commands, so both take the same path."""
    outcome = _execute(label, pk, worker)
    if outcome in ENDED:
        job_ended.send_robust(sender=None, label=label, pk=pk, status=outcome)
    return outcome


def _execute(label: str, pk: int, worker: str) -> str:
    model = apps.get_model(label)
    claimed = claim(model, pk, worker)
    if claimed is None:
        return "skipped"
    job, lease = claimed
    beat = Heartbeat(model, pk, lease, settings.JOB_HEARTBEAT_SECONDS)
    beat.start()
    try:
        run_with_reconnects(job, lease)
    except JobCancelled:
        finish(model, pk, lease, JobStatus.CANCELLED, detail="cancelled on request")
        return JobStatus.CANCELLED
    except JobStopped as stop:
        finish(model, pk, lease, JobStatus.STOPPED, detail=str(stop))
        return JobStatus.STOPPED
    except LeaseLost:
        log.warning("%s %s: lease lost, another worker continues it", label, pk)
        return "lease lost"
    except JobReleased:
        log.warning("%s %s: its worker is shutting down; back to the queue for another", label, pk)
        reconnected(lambda: release(model, pk, lease, "released by a worker shutting down"))
        return "released"
    except DatabaseGone as exc:
        log.error("%s %s: %s; released to the queue as soon as it is back", label, pk, exc)
        release_when_back(model, pk, lease)
        return "released"
    except Exception as exc:  # the job's own failure: recorded on the row and shown, never lost
        log.exception("%s %s failed", label, pk)
        error = f"{type(exc).__name__}: {exc}"
        reconnected(lambda: finish(model, pk, lease, JobStatus.FAILED, error=error))
        return JobStatus.FAILED
    finally:
        beat.stop()
    reconnected(job.refresh_from_db)
    if job.status == JobStatus.RUNNING:
        reconnected(lambda: finish(model, pk, lease, JobStatus.DONE))
        return JobStatus.DONE
    return job.status


def release_orphans_of(worker: str) -> list[tuple[type[Job], int]]:
    """Jobs this very node was running are dead for sure when it (re)starts: back to queued."""
    released = []
    for model in job_models():
        for pk in list(model.objects.filter(status=JobStatus.RUNNING, worker=worker).values_list("pk", flat=True)):
            if model.objects.filter(pk=pk, status=JobStatus.RUNNING, worker=worker).update(
                status=JobStatus.QUEUED, lease=None, enqueued_at=timezone.now()
            ):
                released.append((model, pk))
    return released


def requeue_orphans_of(worker: str) -> list[tuple[str, int]]:
    """At worker start: its orphans go back to the queue, with a message each."""
    requeued = []
    for model, pk in release_orphans_of(worker):
        send_job_message(model.label(), pk, model.queue)
        requeued.append((model.label(), pk))
    return requeued


def sweep_stale_jobs(now=None) -> list[tuple[str, int]]:
    """Put running jobs with a stale heartbeat back in the queue, and re-send queued jobs whose
    message may have been lost. Safe to run anywhere, any number of times at once."""
    now = now or timezone.now()
    stale_before = now - timedelta(seconds=settings.JOB_STALE_AFTER_SECONDS)
    resend_before = now - timedelta(seconds=settings.JOB_RESEND_QUEUED_AFTER_SECONDS)
    swept: list[tuple[str, int]] = []
    for model in job_models():
        stale = model.objects.filter(status=JobStatus.RUNNING, heartbeat_at__lt=stale_before)
        for pk in list(stale.values_list("pk", flat=True)):
            # conditional: only one sweeper wins, and a job that just beat is left alone
            if model.objects.filter(pk=pk, status=JobStatus.RUNNING, heartbeat_at__lt=stale_before).update(
                status=JobStatus.QUEUED, lease=None, enqueued_at=now
            ):
                log.warning("%s %s: heartbeat stale, re-enqueued", model.label(), pk)
                send_job_message(model.label(), pk, model.queue)
                swept.append((model.label(), pk))
        lost = model.objects.filter(status=JobStatus.QUEUED).filter(
            models.Q(enqueued_at__lt=resend_before) | models.Q(enqueued_at__isnull=True)
        )
        for pk in list(lost.values_list("pk", flat=True)):
            if lost.filter(pk=pk).update(enqueued_at=now):  # conditional: one sweeper re-sends it
                send_job_message(model.label(), pk, model.queue)
                swept.append((model.label(), pk))
    return swept


J = TypeVar("J", bound=Job)


def wait_for(job: J, poll: float = 0.5, timeout: float | None = None, on_progress=None, until=None) -> J:
    """Block until a job leaves the queued/running states (used by ``--wait`` options), or until
    ``until()`` says there is no point waiting longer."""
    deadline = time.monotonic() + timeout if timeout else None
    while True:
        close_old_connections()
        job.refresh_from_db()
        if on_progress:
            on_progress(job)
        if not job.is_active or (until is not None and until()):
            return job
        if deadline and time.monotonic() > deadline:
            raise TimeoutError(f"{job} still {job.status} after {timeout} s")
        time.sleep(poll)


def active(models_: Iterable[type[Job]] | None = None) -> int:
    return sum(m.objects.filter(status__in=ACTIVE_STATUSES).count() for m in (models_ or job_models()))
