"""`make demo`: the whole pipeline on the embedded default, one stage after another.

Each stage says whether it is already done, so a second run skips it; a failed stage says what
failed and how to resume. Later parts of the product add their stages to STAGES."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.core.management import call_command

from evalsite.env import BASE_DIR


@dataclass
class DemoState:
    """What stages tell the final summary (credentials created on this run, URLs...)."""

    lines: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Stage:
    name: str
    run: Callable[[DemoState], None]
    is_done: Callable[[], bool] = lambda: False


class StageFailed(Exception):
    pass


def _migrate(state: DemoState) -> None:
    call_command("migrate", interactive=False, verbosity=0)


def _migrated() -> bool:
    from evalsite.core.health import pending_migrations

    return not pending_migrations()


def _seed(state: DemoState) -> None:
    call_command("seed")


def _seeded() -> bool:
    from evalsite.catalog.models import PromptSet
    from evalsite.catalog.seed import SHIPPED_SETS

    return PromptSet.objects.filter(name__in=[s.name for s in SHIPPED_SETS]).count() == len(SHIPPED_SETS)


def _staff(state: DemoState) -> None:
    from evalsite.core.accounts import ensure_staff_user

    user, password = ensure_staff_user("admin")
    if password:
        state.lines.append(f"staff login: {user.username} / {password}   (shown once)")


def _staff_exists() -> bool:
    from django.contrib.auth.models import User

    return User.objects.filter(username="admin").exists()


STAGES: list[Stage] = [
    Stage("migrate the database", _migrate, _migrated),
    Stage("load the shipped prompt sets and register the bundled model", _seed, _seeded),
    Stage("create the staff user", _staff, _staff_exists),
]


def run_stages(write: Callable[[str], None], stages: list[Stage] | None = None) -> DemoState:
    state = DemoState()
    stages = stages or STAGES
    for i, stage in enumerate(stages, start=1):
        prefix = f"[{i}/{len(stages)}] {stage.name}"
        try:
            if stage.is_done():
                write(f"{prefix}: already done, skipped")
                continue
            started = time.monotonic()
            write(f"{prefix} ...")
            stage.run(state)
        except Exception as exc:
            raise StageFailed(
                f"{prefix} failed: {type(exc).__name__}: {exc}\n"
                "Fix the cause and run `make demo` again: the stages already done are skipped."
            ) from exc
        write(f"{prefix}: done in {time.monotonic() - started:.1f} s")
    return state


def wait_for_http(url: str, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as reply:  # noqa: S310 (our own local server)
                if reply.status == 200:
                    return True
        except OSError:
            time.sleep(0.5)
    return False


def serve(host: str, port: int, write: Callable[[str], None]) -> int:
    """Start one worker (all queues, with the periodic sweep) and the web server; run until
    Ctrl-C, then stop both."""
    python = sys.executable

    stopping = []
    # `kill` (SIGTERM) and Ctrl-C both stop the children too
    signal.signal(signal.SIGTERM, lambda signum, frame: stopping.append(signum))
    var_logs = Path(settings.VAR_DIR) / "logs"
    var_logs.mkdir(parents=True, exist_ok=True)
    worker_log = (var_logs / "worker.log").open("ab")
    worker = subprocess.Popen(
        [
            python,
            "-m",
            "celery",
            "-A",
            "evalsite",
            "worker",
            "-B",
            "-n",
            "demo@%h",
            "-c",
            "2",
            "-Q",
            "generation,judge,training,default",
            "-l",
            "info",
        ],
        cwd=BASE_DIR,
        stdout=worker_log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    web = subprocess.Popen(
        [python, "manage.py", "runserver", f"{host}:{port}", "--noreload"], cwd=BASE_DIR, start_new_session=True
    )
    try:
        if not wait_for_http(f"http://{host}:{port}/healthz"):
            write(f"the web server did not answer on {host}:{port}; is the port taken?")
            return 1
        write(f"site:   http://{host}:{port}/   (admin: http://{host}:{port}/admin/)")
        write(f"worker: log in {var_logs / 'worker.log'}")
        write("Press Ctrl-C to stop.")
        while web.poll() is None and worker.poll() is None and not stopping:
            time.sleep(0.5)
        if stopping:
            return 0
        write("the web server or the worker stopped; shutting down (see the logs above)")
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        for proc in (web, worker):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in (web, worker):
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
