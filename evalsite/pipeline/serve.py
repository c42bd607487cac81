"""The demo's processes: the local judge's server while the judge stage runs, then one worker
and the web server until Ctrl-C."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from django.conf import settings

from evalsite.core.health import wait_for_http
from evalsite.env import BASE_DIR
from generation.server import DEFAULT_PORT as LOCAL_JUDGE_PORT


def web_environment() -> dict[str, str]:
    """The demo's web server's environment: DEBUG off (the site annotators use shows its own error
    pages, never Django's debug pages, which list every URL), plain-HTTP cookies, and marked one
    machine (its SQLite and filesystem broker are the point, not a deployment's mistake)."""
    return dict(
        os.environ,
        DEBUG="0",
        SECRET_KEY=settings.SECRET_KEY,
        SESSION_COOKIE_SECURE="0",
        CSRF_COOKIE_SECURE="0",
        EVALSITE_ONE_MACHINE="1",
    )


def local_judge_listening() -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", LOCAL_JUDGE_PORT)) == 0


def start_local_judge() -> subprocess.Popen:
    """`manage.py serve_openai` (the bundled SmolLM2 behind /v1/chat/completions) for the judge."""
    logs = Path(settings.VAR_DIR) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    server = subprocess.Popen(
        [sys.executable, "manage.py", "serve_openai", "--port", str(LOCAL_JUDGE_PORT)],
        cwd=BASE_DIR,
        stdout=(logs / "local-judge.log").open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the local judge server exited; see {logs / 'local-judge.log'}")
        if local_judge_listening():
            return server
        time.sleep(0.5)
    os.killpg(server.pid, signal.SIGTERM)
    raise RuntimeError(f"the local judge did not listen on port {LOCAL_JUDGE_PORT} within 120 s")


STOP_SECONDS = 5.0


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
    # --insecure serves the static files that DEBUG would have
    web = subprocess.Popen(
        [python, "manage.py", "runserver", f"{host}:{port}", "--noreload", "--insecure"],
        cwd=BASE_DIR,
        env=web_environment(),
        start_new_session=True,
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
        write("stopping the web server and the worker (a job it was running is taken up again next time) ...")
        for proc in (web, worker):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        # a worker's warm shutdown waits for its job to end; the demo's jobs resume from what the
        # database holds, so after STOP_SECONDS it is killed rather than waited for
        deadline = time.monotonic() + STOP_SECONDS
        for proc in (web, worker):
            try:
                proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        write("stopped")
