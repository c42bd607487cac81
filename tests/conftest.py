"""Shared fixtures. The suite runs on the real PostgreSQL and Redis of the machine (see the
Makefile's test target); Celery workers are real processes started here."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _broker_of_this_test_process() -> None:
    """Under pytest-xdist (`make test` runs two test processes), each has its own test database
    (pytest-django names them ..._gw0, ..._gw1) and, here, its own Redis database as the broker
    (15, 14, ...), so that neither's workers take the other's messages; the worker processes the
    tests start inherit it."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    broker = os.environ.get("CELERY_BROKER_URL", "")
    if not worker.startswith("gw") or not broker.startswith("redis://"):
        return
    mine = broker.rsplit("/", 1)[0] + f"/{15 - int(worker[2:])}"
    os.environ["CELERY_BROKER_URL"] = mine
    from django.conf import settings

    from evalsite.celery import app

    settings.CELERY_BROKER_URL = mine
    app.conf.broker_url = mine


def pytest_configure(config) -> None:
    _broker_of_this_test_process()


def shared_database_url() -> str:
    """The URL of the database pytest-django created, for worker processes to share it."""
    from django.db import connection

    s = connection.settings_dict
    if s["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{s['NAME']}"
    auth = s["USER"] + (f":{s['PASSWORD']}" if s.get("PASSWORD") else "")
    return f"postgres://{auth}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


class Worker:
    def __init__(self, proc: subprocess.Popen, log: Path, name: str):
        self.proc, self.log, self.name = proc, log, name

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL the whole process group: a crash, not a shutdown."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


def start_worker(
    env: dict,
    log: Path,
    name: str,
    queues: str = "generation,judge,training,default",
    pool: str = "solo",
    concurrency: int = 1,
    timeout: float = 60.0,
    cwd: Path = ROOT,
) -> Worker:
    cmd = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "evalsite",
        "worker",
        "-P",
        pool,
        "-c",
        str(concurrency),
        "-n",
        f"{name}@test",
        "-Q",
        queues,
        "--without-mingle",
        "--without-gossip",
        "-l",
        "info",
    ]
    handle = log.open("ab")
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)
    worker = Worker(proc, log, name)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if " ready." in worker.output():
            return worker
        if proc.poll() is not None:
            raise RuntimeError(f"worker {name} exited:\n{worker.output()[-3000:]}")
        time.sleep(0.2)
    worker.kill()
    raise RuntimeError(f"worker {name} not ready after {timeout} s:\n{worker.output()[-3000:]}")


@pytest.fixture
def worker_env(transactional_db, settings):
    """Environment for a worker process that shares this test's database and broker."""
    import redis

    broker = os.environ.get("CELERY_BROKER_URL", "")
    if broker.startswith("redis://"):
        redis.Redis.from_url(broker).flushdb()  # no messages left over from an earlier test
    env = os.environ.copy()
    env.update({"DATABASE_URL": shared_database_url(), "PYTHONUNBUFFERED": "1", "DB_CONN_MAX_AGE": "0"})
    return env


@pytest.fixture
def workers(worker_env, tmp_path):
    started: list[Worker] = []

    def start(name: str = "w1", env_overrides: dict | None = None, **kwargs) -> Worker:
        env = dict(worker_env, **(env_overrides or {}))
        worker = start_worker(env, tmp_path / f"{name}.log", name, **kwargs)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture
def live_worker(workers):
    """A worker of the live queue, as the site runs one: threads sharing the loaded backends."""
    return workers("live", queues="live", pool="threads", concurrency=4)


def free_port() -> int:
    """A loopback port nothing listens on (yet): for a server the test starts, or a dead one."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout: float = 30.0, poll: float = 0.1, message: str = "condition"):
    from django.db import close_old_connections

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        close_old_connections()
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout} s waiting for {message}")


@pytest.fixture
def staff_client(client, django_user_model):
    user = django_user_model.objects.create_superuser("boss", "boss@example.org", "pw-boss-123")
    client.force_login(user)
    return client


@pytest.fixture
def annotator_client(client, django_user_model):
    from evalsite.core.accounts import annotators_group

    user = django_user_model.objects.create_user("outsider", password="pw-outsider-123")
    user.groups.add(annotators_group())
    client.force_login(user)
    return client


@pytest.fixture(autouse=True)
def clear_cache():
    """The login rate limit counts in the cache, a study's size in the process's: each test starts
    with none."""
    from django.core.cache import caches

    for cache in caches.all():
        cache.clear()
