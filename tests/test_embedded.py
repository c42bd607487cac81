"""Smoke test of the embedded default: SQLite and the filesystem broker, no server at all,
with real prefork workers, as `make demo` runs it."""

import os
import re
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


def test_the_demo_pipeline_runs_on_the_embedded_default_and_a_second_run_skips_it(tmp_path):
    """`manage.py demo --no-serve` on SQLite with no server: every job runs in the demo process
    (with a progress bar), tiny settings; then again, where every stage is skipped."""
    from tests.openai_stub import OpenAIStub
    from tests.test_demo_pipeline import api_wins_judge
    from tests.test_training_runs import chat_file
    from tests.tiny_models import save_tiny

    env = embedded_env(tmp_path)
    base = save_tiny(tmp_path / "tiny")
    test_file = tmp_path / "test.jsonl"
    test_file.write_text(
        "".join(
            f'{{"id": "t{i}", "messages": [{{"role": "user", "content": "tell me a joke {i}"}}]}}\n' for i in range(3)
        )
    )
    with OpenAIStub(responder=api_wins_judge) as judge:
        for command in (
            ["migrate", "-v0"],
            ["systems", "add", "tiny", "--backend", "hf_local", "--model-path", str(base)],
            ["import_prompts", str(test_file), "--set", "tiny-test"],
            ["judge_config", "add", "stub", "--model", "gpt-4", "--base-url", judge.url, "--api-key-env", ""],
        ):
            done = manage(env, *command)
            assert done.returncode == 0, done.stdout + done.stderr
        env.update(
            {
                "DEMO_BASE_SYSTEM": "tiny",
                "DEMO_RECIPE_SET": "epochs=1 lr=1e-3 final_lr=1e-4 batch_size=2 micro_batch_size=2 max_length=64",
                "DEMO_TRAIN_FILE": chat_file(tmp_path),
                "DEMO_TEST_SET": "tiny-test",
                "DEMO_MAX_NEW_TOKENS": "4",
                "DEMO_JUDGE": "stub",
                "DEMO_ANNOTATORS": "1",
            }
        )
        first = manage(env, "demo", "--no-serve", timeout=600)
        assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
        second = manage(env, "demo", "--no-serve", timeout=300)
    assert "judge study demo with stub: done in" in first.stdout
    # the quick links the workflow did on its way are told as done, and their lines are in the summary
    assert "register the last checkpoint as candidate tiny-lima-mini: done on the way" in first.stdout
    assert "candidate: tiny-lima-mini (epoch 1 of run 1)" in first.stdout
    assert "study: demo, 3 comparisons" in first.stdout
    assert "annotator: demo-annotator-1 / " in first.stdout and "staff login: admin / " in first.stdout
    assert "training #1" in first.stderr and "100%" in first.stderr  # the progress bars
    assert second.returncode == 0 and "done in" not in second.stdout
    # the first run's one-time links are spent: the second prints fresh ones, for staff too
    first_links = set(re.findall(r"one-time: (\S+)", first.stdout))
    again = dict(re.findall(r"(annotator: demo-annotator-1|staff login: admin) .*one-time: (\S+)", second.stdout))
    assert set(again) == {"annotator: demo-annotator-1", "staff login: admin"}
    assert not first_links & set(again.values())
    assert second.stdout.count("already done, skipped") == 11
    run_dir = tmp_path / "var" / "models" / "runs" / "run-0001"
    assert (run_dir / "epoch-01" / "recipe.json").exists()
    # it trained in a child process (the launcher path), which gave its memory back when it exited
    assert (run_dir / "launcher.log").exists() and "finished" in (run_dir / "progress.jsonl").read_text()
    # from the curation to the judge, one workflow the demo's own process carried (no worker here)
    shown = manage(env, "shell", "--no-imports", "-c", SHOW_DEMO_WORKFLOW)
    assert shown.stdout.split() == ["done", "False", "7", "7"], shown.stdout + shown.stderr
    served_without_debug_pages(env)


SHOW_DEMO_WORKFLOW = (
    "from evalsite.core.models import Workflow; w = Workflow.objects.get(kind='demo'); "
    "print(w.status, w.by_workers, sum(s['state'] == 'done' for s in w.steps), len(w.steps))"
)


def served_without_debug_pages(env) -> None:
    """The demo's site, as annotators reach it: the site's own error pages, never Django's debug
    pages (which list every URL), static files served, the login page up; SIGTERM stops it."""
    import signal

    import requests
    from bs4 import BeautifulSoup

    from evalsite.core.health import wait_for_http
    from tests.conftest import free_port

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "demo", "--port", str(port)], cwd=ROOT, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        assert wait_for_http(f"{base}/healthz", timeout=120), "the demo's site did not answer"
        missing = requests.get(f"{base}/annotate/item/999999/", timeout=10, allow_redirects=False)
        assert missing.status_code in (302, 404)
        lost = requests.get(f"{base}/no-such-page", timeout=10)
        page = BeautifulSoup(lost.text, "html.parser")
        assert lost.status_code == 404 and page.select_one(".error-page")["data-status"] == "404"
        assert page.select_one("#info") is None, "not Django's technical 404 page"
        assert requests.get(f"{base}/static/admin/css/base.css", timeout=10).status_code == 200
        assert requests.get(f"{base}/accounts/login/", timeout=10).status_code == 200
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        said = proc.communicate(timeout=60)[0].decode()
    # it says what it stops, and that it has
    assert "stopping the web server and the worker" in said and said.rstrip().endswith("stopped")


def test_a_malformed_demo_setting_is_refused_before_any_stage_runs(monkeypatch):
    import pytest
    from django.core.management import CommandError, call_command

    monkeypatch.setenv("DEMO_RECIPE_SET", "epochs=2 lr")
    with pytest.raises(CommandError, match="DEMO_RECIPE_SET takes FIELD=VALUE pairs separated by spaces, not 'lr'"):
        call_command("demo", no_serve=True)
