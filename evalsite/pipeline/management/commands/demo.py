import argparse
import os
import sys

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from evalsite.env import BASE_DIR
from evalsite.pipeline.serve import serve
from evalsite.pipeline.stages import StageFailed, fresh_logins, run_stages


class Command(BaseCommand):
    help = "Run the demo pipeline on the embedded default (stages already done are skipped), then serve the site."

    def add_arguments(self, parser):
        parser.add_argument("--no-serve", action="store_true", help="run the batch stages only")
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=settings.DEMO_PORT, help="default: DEMO_PORT, else 8000")
        parser.add_argument("--serve-only", action="store_true", help=argparse.SUPPRESS)  # what the demo execs

    def handle(self, *args, **opts):
        serves_at(opts["host"], opts["port"])
        if opts["serve_only"]:
            return self.serve(opts)
        try:
            state = run_stages(self.stdout.write)
        except StageFailed as exc:
            raise CommandError(str(exc)) from exc
        for line in state.lines:
            self.stdout.write(self.style.SUCCESS(line))
        if not any(line.startswith("annotator:") for line in state.lines):
            # a second run: the first run's one-time links are spent; fresh ones for every account
            for line in fresh_logins():
                self.stdout.write(self.style.SUCCESS(line))
            self.stdout.write("forgotten a password? manage.py changepassword admin (or demo-annotator-1, ...)")
        if opts["no_serve"]:
            return
        # the stages' models and libraries (gigabytes after training) are given back: the site is
        # served from a fresh process that imports only what serving needs
        self.stdout.flush()
        os.execv(
            sys.executable,
            [sys.executable, str(BASE_DIR / "manage.py"), "demo", "--serve-only"]
            + ["--host", opts["host"], "--port", str(opts["port"])],
        )

    def serve(self, opts: dict) -> None:
        code = serve(opts["host"], opts["port"], self.stdout.write)
        if code:
            raise CommandError("the demo's server stopped")


def serves_at(host: str, port: int) -> None:
    """Unless SITE_URL says where people reach the site, the links the demo prints, and those its
    web server and worker make (they inherit the environment), point where it serves."""
    if "SITE_URL" not in os.environ:
        shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        os.environ["SITE_URL"] = settings.SITE_URL = f"http://{shown}:{port}"
