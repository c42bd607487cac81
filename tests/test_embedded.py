"""Smoke test of the embedded default: SQLite and the filesystem broker, no server at all,
with real prefork workers, as `make demo` runs it."""

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

from tests.conftest import ROOT, start_worker


def embedded_env(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CELERY_BROKER_URL")}
    env.update({"EVALSITE_VAR_DIR": str(tmp_path / "var"), "PYTHONUNBUFFERED": "1"})
    return env


def manage(env, *args, timeout=120):
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def test_a_job_and_a_task_round_trip_through_the_filesystem_broker(tmp_path):
    env = embedded_env(tmp_path)
    assert manage(env, "migrate", "-v0").returncode == 0
    worker = start_worker(env, tmp_path / "worker.log", "embedded", pool="prefork", concurrency=2)
    try:
        doctor = manage(env, "doctor", "--worker", "--timeout", "60")
        assert doctor.returncode == 0, doctor.stdout + doctor.stderr
        assert "worker     ok   embedded@test" in doctor.stdout
        assert "self-test  ok   job #1 done by embedded@test" in doctor.stdout
        code = "from evalsite.core.tasks import ping; print(ping.delay('fs').get(timeout=30))"
        result = manage(env, "shell", "--no-imports", "-c", code)
        assert result.returncode == 0, result.stderr
        assert "{'value': 'fs', 'database': 'sqlite'}" in result.stdout
    finally:
        worker.stop()
    assert (tmp_path / "var" / "evalsite.sqlite3").exists()
    assert not list((tmp_path / "var" / "broker" / "queue").glob("*.msg")), "no message left behind"


WRITER = """
import django, os, sys
os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'evalsite.settings')
django.setup()
from django.db import transaction
from evalsite.core.models import SelfTestJob
for i in range(150):
    with transaction.atomic():          # read, then write: the pattern that deadlocks in DEFERRED mode
        n = SelfTestJob.objects.count()
        SelfTestJob.objects.create(steps=n)
print('ok')
"""


def test_concurrent_writers_on_sqlite_do_not_fail_with_database_is_locked(tmp_path):
    env = embedded_env(tmp_path)
    assert manage(env, "migrate", "-v0").returncode == 0

    def run_writer(_):
        return subprocess.run(
            [sys.executable, "-c", WRITER], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
        )

    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(run_writer, range(3)))
    for result in results:
        assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]
    count = manage(
        env,
        "shell",
        "--no-imports",
        "-c",
        "from evalsite.core.models import SelfTestJob; print(SelfTestJob.objects.count())",
    )
    assert count.stdout.strip().splitlines()[-1] == "450"
