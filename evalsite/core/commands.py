"""The one shape of a command that starts a job: it checks and starts (or joins) the job, then
runs it here (--foreground), follows it with a progress bar (--wait) or leaves it to the workers,
and reports the finished job. A refusal (CannotStart) is a CommandError with its message."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from evalsite.core.jobs import CannotStart, Job, JobStatus
from evalsite.core.progress import run_or_follow


class JobCommand(BaseCommand):
    # what a command that leaves its job to the workers says next
    follow_hint = "follow it with --wait, on the jobs page, or: manage.py doctor"

    def add_arguments(self, parser):
        self.add_job_arguments(parser)
        parser.add_argument("--wait", action="store_true", help="show a progress bar until the job ends")
        parser.add_argument("--foreground", action="store_true", help="run here, without a worker")

    def add_job_arguments(self, parser) -> None:
        """The command's own options."""

    def start(self, opts: dict, enqueue: bool) -> tuple[Job, bool]:  # pragma: no cover - abstract
        """Check the options and start (or join) the job: (job, started). Raises CannotStart."""
        raise NotImplementedError

    def started(self, job: Job, started: bool) -> str:
        return f"{'started' if started else 'already running'}: {job}"

    def report(self, job: Job) -> None:
        """Say what a finished job did (a job that did not end done is then an error)."""
        self.stdout.write(f"{job}: {job.status} {job.status_detail}")

    def handle(self, *args, **opts):
        try:
            job, started = self.start(opts, enqueue=not opts["foreground"])
        except CannotStart as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(self.started(job, started))
        finished = self.follow(job, started, opts)
        if finished is not None:
            self.report(finished)
            self.refuse_unfinished(finished)

    def follow(self, job: Job, started: bool, opts: dict) -> Job | None:
        """Run, follow or leave the job as the options say; the finished job, or None."""
        finished = run_or_follow(job, started, opts["foreground"], opts["wait"])
        if finished is None:
            self.stdout.write(self.follow_hint)
        return finished

    def refuse_unfinished(self, job: Job) -> None:
        if job.status != JobStatus.DONE:
            raise CommandError(f"{job} ended {job.status}: {job.error or job.status_detail}")
