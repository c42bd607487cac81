import time

from django.core.management.base import BaseCommand, CommandError

from evalsite.core import health, jobs
from evalsite.core.models import SelfTestJob
from generation.bundled import BUNDLED_GGUF_FILE, INSTALL_HINT, bundled_model_dir


class Command(BaseCommand):
    help = "Check the configuration and the services: database, broker, live workers, the bundled model."

    def add_arguments(self, parser):
        parser.add_argument(
            "--worker", action="store_true", help="also send a self-test job and wait for a worker to run it"
        )
        parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the self-test job")

    def line(self, name: str, ok: bool | None, detail: str) -> None:
        mark = {True: self.style.SUCCESS("ok  "), False: self.style.ERROR("FAIL"), None: self.style.WARNING("warn")}[ok]
        self.stdout.write(f"{name:<10} {mark} {detail}")

    def handle(self, *args, **opts):
        failures = 0
        db_ok, detail = health.database_status()
        self.line("database", db_ok, detail)
        failures += not db_ok
        if db_ok:
            pending = health.pending_migrations()
            self.line(
                "migrations",
                not pending if not pending else None,
                "up to date" if not pending else f"{len(pending)} unapplied: run manage.py migrate",
            )
        broker_ok, detail = health.broker_status()
        self.line("broker", broker_ok, detail)
        failures += not broker_ok
        if broker_ok:
            workers = health.live_workers()
            if workers:
                for node, queues in sorted(workers.items()):
                    self.line("worker", True, f"{node} (queues: {', '.join(queues)})")
            else:
                self.line(
                    "workers",
                    None,
                    "none answered in 2 s; start one: "
                    "celery -A evalsite worker -Q generation,judge,training,default -B "
                    "(and for chat answers: celery -A evalsite worker -Q live -P threads)",
                )
        folder = bundled_model_dir()
        if folder:
            self.line("model", True, f"bundled SmolLM2-135M-Instruct: {folder / BUNDLED_GGUF_FILE}")
        else:
            self.line("model", None, f"bundled SmolLM2-135M-Instruct not installed: {INSTALL_HINT}")
        if db_ok and not health.pending_migrations():
            self.line("jobs", True, f"{jobs.active()} queued or running")
        if opts["worker"] and db_ok and broker_ok:
            failures += not self.self_test(opts["timeout"])
        if failures:
            raise CommandError(f"{failures} check(s) failed")

    def self_test(self, timeout: float) -> bool:
        job = SelfTestJob.objects.create(steps=3, seconds_per_step=0.05)
        job.enqueue()
        started = time.monotonic()
        try:
            job = jobs.wait_for(job, poll=0.2, timeout=timeout)
        except TimeoutError:
            job.request_cancel()
            self.line("self-test", False, f"no worker ran job #{job.pk} within {timeout:.0f} s")
            return False
        ok = job.status == jobs.JobStatus.DONE
        self.line("self-test", ok, f"job #{job.pk} {job.status} by {job.worker} in {time.monotonic() - started:.1f} s")
        return ok
