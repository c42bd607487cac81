"""The demo's processes: the local judge's server while the judge stage runs, then two workers
(the batch queues; the live queue, which writes chat answers) and the web server until Ctrl-C."""

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
from generation.config import LOCAL_SERVER_PORT as LOCAL_JUDGE_PORT


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


def start_worker(name: str, queues: str, options: list[str], log: Path):
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "evalsite", "worker", "-n", f"{name}@%h", "-Q", queues, *options]
        + ["-l", "info"],
        cwd=BASE_DIR,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def serve(host: str, port: int, write: Callable[[str], None]) -> int:
    """Start one worker for the batch queues (with the periodic sweep), one for the live queue
    (chat answers, from threads that share its loaded models) and the web server; run until
    Ctrl-C, then stop all three. The live worker loads a model when its first message asks for it
    (the chat says "loading the model" for about 1.5 s) unless CHAT_PRELOAD_SYSTEMS names systems
    to load as it starts: idle, the served processes hold about 400 MiB less without
    (bench/demo.py)."""
    python = sys.executable

    stopping = []
    # `kill` (SIGTERM) and Ctrl-C both stop the children too
    signal.signal(signal.SIGTERM, lambda signum, frame: stopping.append(signum))
    var_logs = Path(settings.VAR_DIR) / "logs"
    var_logs.mkdir(parents=True, exist_ok=True)
    # each job in a pool process that exits after it: a model a job loaded is given back, not held
    # by an idle worker until the next job (item 5 of issue 32: the serving processes idle in 1 GB)
    worker = start_worker(
        "demo",
        "generation,judge,training,default",
        ["-B", "-c", "2", "--max-tasks-per-child", "1"],
        var_logs / "worker.log",
    )
    live = start_worker("live", "live", ["-P", "threads", "-c", "4"], var_logs / "live-worker.log")
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
        write(f"workers: logs in {var_logs / 'worker.log'} and {var_logs / 'live-worker.log'} (chat answers)")
        write("Press Ctrl-C to stop.")
        while web.poll() is None and worker.poll() is None and live.poll() is None and not stopping:
            time.sleep(0.5)
        if stopping:
            return 0
        write("the web server or a worker stopped; shutting down (see the logs above)")
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        write("stopping the web server and the workers (a job they were running is taken up again next time) ...")
        for proc in (web, worker, live):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        # a worker's warm shutdown waits for its job to end; the demo's jobs resume from what the
        # database holds, so after STOP_SECONDS it is killed rather than waited for
        deadline = time.monotonic() + STOP_SECONDS
        for proc in (web, worker, live):
            try:
                proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        write("stopped")
