"""A benchmark that no longer runs says so in CI, not months later: each bench with a smoke form
(seconds, tiny inputs, nothing written to bench/results/) is run here."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT


def test_the_dashboard_bench_still_runs_on_todays_schema():
    """bench/dashboard.py fills PostgreSQL with raw INSERTs: a NOT NULL column added since (four
    were, and it broke unseen) fails here. It also checks the page's numbers equal a Python loop's."""
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    done = subprocess.run(
        [sys.executable, "bench/dashboard.py", "--smoke"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2,000 human judgments and 2,000 judge verdicts on 1,000 comparisons" in done.stdout
    assert "written to" not in done.stdout


@pytest.mark.slow
def test_the_serving_bench_still_runs():
    """bench/serving.py streams the bundled model through `manage.py serve_openai` at two
    concurrencies and reads each answer's first token and usage from the event stream."""
    done = subprocess.run(
        [sys.executable, "bench/serving.py", "--smoke"], cwd=ROOT, capture_output=True, text=True, timeout=400
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert [line.split(":")[0] for line in lines[:2]] == ["c1", "c2"], done.stdout
    assert all("first token p50" in line for line in lines[:2])
    assert "written to" not in done.stdout
