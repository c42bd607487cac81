"""Workflows: chains of jobs that the workers carry forward.

A workflow is a row (``core.models.Workflow``) and a kind, an object registered here under a name
(``KINDS``), whose ``advance(workflow, enqueue, retry)`` looks at where the chain stands and
starts what can start, each step a start-or-join, so that calling it any number of times, from
any process, does each step once. It returns the steps as they stand (``Step``); the workflow is
done when every step is, failed when one failed (run the command again to retry it).

Who calls ``advance``:

- a worker, whenever one of its jobs ends (``jobs.execute`` sends ``jobs.job_ended``, which
  core/signals.py passes to ``job_ended`` here);
- beat's sweep (``core.advance_workflows``, every WORKFLOW_SWEEP_SECONDS), for a message lost or
  a worker killed between a job's end and its advance;
- the command that started it, once, and a ``--wait`` that only follows it;
- a ``--foreground`` command, which runs the jobs itself (``by_workers`` False: workers leave it
  alone).

The row is locked while it advances, so two workers ending jobs of one workflow at once take
turns. Adding a workflow: a class with ``name``, ``title(subject_id)``, ``link(subject_id)`` and
``advance``, registered with ``register`` from its app's ``ready`` (finetune/workflows.py holds
the ablation and the checkpoint selection)."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Protocol

from django.db import transaction
from django.utils import timezone

from evalsite.core.jobs import Job, JobStatus
from evalsite.core.models import Workflow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Step:
    """One step as the last advance found it: ``state`` is waiting (its turn has not come),
    queued, running, done or failed; ``job`` the job it waits for ("label:pk"), if any."""

    name: str
    state: str
    job: str = ""
    detail: str = ""

    @classmethod
    def of_job(cls, name: str, job: Job | None, detail: str = "") -> Step:
        if job is None:
            return cls(name, "waiting", detail=detail)
        states: dict[str, str] = {JobStatus.DONE: "done", JobStatus.QUEUED: "queued", JobStatus.RUNNING: "running"}
        state = states.get(job.status, "failed")
        if state == "failed" and not detail:
            detail = f"{job} ended {job.status}: {job.error}".strip(": ")
        return cls(name, state, f"{job.label()}:{job.pk}", detail)

    def job_ref(self) -> tuple[str, int]:
        """(label, pk) of the job it waits for, as ``jobs.execute`` takes them."""
        label, _, pk = self.job.rpartition(":")
        return label, int(pk)


class WorkflowKind(Protocol):
    name: str
    # whether beat's sweep (and a worker's start) advances it; False for a kind a periodic task of
    # its own drives at its own pace (a study's stop: dashboard.check_targets), which would
    # otherwise do its work twice as often as that task's setting says. A job's end advances it
    # either way.
    swept: bool

    def title(self, subject_id: int) -> str: ...

    def link(self, subject_id: int) -> str: ...

    def advance(self, workflow: Workflow, enqueue: bool, retry: bool) -> list[Step]: ...


KINDS: dict[str, WorkflowKind] = {}


def register(kind: WorkflowKind) -> WorkflowKind:
    KINDS[kind.name] = kind
    return kind


def kind_of(workflow: Workflow) -> WorkflowKind:
    try:
        return KINDS[workflow.kind]
    except KeyError:
        raise LookupError(f"no workflow kind {workflow.kind!r} (known: {', '.join(sorted(KINDS))})") from None


def start(
    kind: str, subject_id: int, by_workers: bool = True, retry: bool = False, params: dict | None = None
) -> Workflow:
    """The workflow of this subject (made the first time, with ``params``), taken one step further
    now. Started again (``retry``), a failed one runs again from its failed step."""
    workflow, _ = Workflow.objects.get_or_create(
        kind=kind,
        subject_id=subject_id,
        defaults={"title": KINDS[kind].title(subject_id), "by_workers": by_workers, "params": params or {}},
    )
    if workflow.by_workers != by_workers:
        Workflow.objects.filter(pk=workflow.pk).update(by_workers=by_workers)
    return advance(workflow.pk, retry=retry)


def advance(pk: int, retry: bool = False) -> Workflow:
    """Take the workflow one step further (under its row's lock) and record its steps."""
    with transaction.atomic():
        workflow = Workflow.objects.select_for_update().get(pk=pk)
        if workflow.status != Workflow.Status.RUNNING and not retry:
            return workflow
        try:
            with transaction.atomic():  # a savepoint: what a failed step wrote goes, the row stays
                steps = kind_of(workflow).advance(workflow, enqueue=workflow.by_workers, retry=retry)
        except Exception as exc:  # a step that cannot start at all (its inputs are gone): shown, not raised
            log.exception("workflow %s could not advance", workflow)
            steps, error = steps_of(workflow), f"{type(exc).__name__}: {exc}"
        else:
            failed = [f"{s.name}: {s.detail}" for s in steps if s.state == "failed"]
            error = "; ".join(failed)
        workflow.steps = [asdict(s) for s in steps]
        workflow.error = error
        done = bool(steps) and all(s.state == "done" for s in steps)
        workflow.status = (
            Workflow.Status.FAILED if error else Workflow.Status.DONE if done else Workflow.Status.RUNNING
        )
        workflow.finished_at = timezone.now() if workflow.status != Workflow.Status.RUNNING else None
        workflow.advances += 1
        workflow.save()
    return workflow


def advance_running(waiting_on: str | None = None) -> int:
    """Every running workflow the workers carry, one step further (beat's sweep, a worker's
    start); with ``waiting_on`` ("label:pk"), only those whose steps wait on that job (every job
    a workflow starts is in the steps its advance recorded). One another process is advancing is
    waited for, not skipped: that process may have looked at the job that just ended before it
    ended."""
    running = Workflow.objects.filter(status=Workflow.Status.RUNNING, by_workers=True)
    pks = [
        pk
        for pk, kind, steps in running.values_list("pk", "kind", "steps")
        if (any(step.get("job") == waiting_on for step in steps) if waiting_on else _swept(kind))
    ]
    for pk in pks:
        advance(pk)
    return len(pks)


def _swept(kind: str) -> bool:
    known = KINDS.get(kind)
    return known is None or known.swept  # an unknown kind is advanced, to say so on its row


def job_ended(label: str, pk: int) -> None:
    """Called by the process that ran a job once it ended, whatever its end: the workflows that
    wait on it go on (a failure here is logged, never the job's; beat's sweep tries again)."""
    try:
        advance_running(waiting_on=f"{label}:{pk}")
    except Exception:
        log.exception("advancing the workflows after %s %s", label, pk)


def steps_of(workflow: Workflow) -> list[Step]:
    return [Step(**row) for row in workflow.steps]
