"""The benches that load a model, in their smoke forms (tests/test_bench_smoke.py has the rest):
the bundled SmolLM2 through serve_openai (ours, against a peer where one is installed), generation
one prompt at a time (the lean decoder against transformers' generate) and batched, and the
training loop against HF's Trainer on a tiny model."""

from __future__ import annotations

import json

import pytest

from tests.test_bench_smoke import run_smoke

HERE = {"serving.py", "serve_drop_in.py", "generation.py", "training.py"}

pytestmark = pytest.mark.slow


def test_the_serving_bench_still_runs():
    """bench/serving.py streams the bundled model through `manage.py serve_openai` at two
    concurrencies and reads each answer's first token and usage from the event stream."""
    lines = run_smoke("serving.py").splitlines()
    assert [line.split(":")[0] for line in lines[:2]] == ["c1", "c2"], lines
    assert all("first token p50" in line for line in lines[:2])


def test_the_drop_in_bench_still_checks_what_clients_rely_on():
    out = run_smoke("serve_drop_in.py")
    checks = json.loads(out[out.index("{") :])["serve_openai"]["checks"]
    assert checks and all(checks.values()), checks


def test_the_generation_and_training_benches_still_run():
    generation = run_smoke("generation.py")
    assert "ratio batched/naive" in generation
    assert "same answers: True" in generation, "one prompt at a time: the lean decoder gives generate's answers"
    assert "ours / HF Trainer" in run_smoke("training.py")
