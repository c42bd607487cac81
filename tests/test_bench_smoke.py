"""A benchmark that no longer runs says so in CI, not months later: every bench in bench/ has a
smoke form (seconds, tiny inputs, nothing written to bench/results/), run here: the benches that
fill a database or drive the web server here, those that load a model in
tests/test_bench_smoke_models.py (two files, so that the two test processes share them)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

BENCHES = sorted(p.name for p in (ROOT / "bench").glob("*.py") if "def main(" in p.read_text())
HERE = {
    "chat.py",
    "demo.py",
    "dashboard.py",
    "annotation.py",
    "annotation_profile.py",
    "coverage.py",
    "evidence.py",
    "judge.py",
    "ranking.py",
}


def run_smoke(script: str, timeout: int = 400) -> str:
    """The bench's smoke form, with this machine's services but not the tests' database (each
    bench makes its own); fails with the bench's own error. Returns what it printed."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CELERY_BROKER_URL")}
    before = {p: p.stat().st_mtime for p in (ROOT / "bench" / "results").iterdir()}
    command = [sys.executable, f"bench/{script}", "--smoke"]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"bench/{script} --smoke failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    after = {p: p.stat().st_mtime for p in (ROOT / "bench" / "results").iterdir()}
    assert after == before, "a smoke run writes nothing to bench/results/"
    return done.stdout


def test_every_bench_has_a_smoke_form_run_by_make_test():
    from tests import test_bench_smoke_models

    assert BENCHES and set(BENCHES) == HERE | test_bench_smoke_models.HERE, "a bench not run in its smoke form"
    for name in BENCHES:
        assert "--smoke" in Path(ROOT / "bench" / name).read_text(), name


def test_the_dashboard_bench_still_runs_on_todays_schema():
    """bench/dashboard.py fills PostgreSQL with raw INSERTs: a NOT NULL column added since (four
    were, and it broke unseen) fails here. It also checks the page's numbers equal a Python loop's."""
    out = run_smoke("dashboard.py")
    assert "2,000 human judgments and 2,000 judge verdicts on 1,000 comparisons" in out


def test_the_annotation_benches_still_run():
    """Gunicorn, logins, claims and submits through the real site, then the database's own check
    (judgments equal accepted submits, nothing judged twice), and the in-process profile."""
    out = run_smoke("annotation.py")
    assert "0 assignments judged twice; 0 comparisons beyond their overlap -> OK" in out
    assert "CPU per next + submit, in process" in run_smoke("annotation_profile.py")


@pytest.mark.parametrize(
    ("script", "says"),
    [
        ("coverage.py", '"coverage_people"'),
        ("evidence.py", "votes to +-5 points"),
        ("judge.py", "duplicate calls over the whole run: 0"),
        ("ranking.py", "votes to settle the top"),
    ],
)
def test_the_statistics_and_judge_benches_still_run(script, says):
    assert says in run_smoke(script)


def test_the_chat_bench_still_runs():
    """A live worker started twice (preloaded and not) writes chat answers through the chat's own
    path, and the same messages streamed in the bench's process give the same answers."""
    out = run_smoke("chat.py")
    assert "same answers: True" in out.splitlines()[-1]
    assert [line.split(",")[0] for line in out.splitlines() if line.startswith("warm")] == ["warm", "warm"]


def test_the_demo_bench_still_runs():
    """`manage.py demo --no-serve` on a tiny model, its stages read from what it prints, its
    processes' memory sampled; then the site it serves, idle, process by process."""
    out = run_smoke("demo.py")
    assert "batch stages:" in out and "peak memory" in out
    served = next(line for line in out.splitlines() if line.startswith("served, idle:"))
    assert "live worker" in served and "web server" in served
