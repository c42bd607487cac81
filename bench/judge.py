"""Judge throughput: 200 judgments (100 comparisons x 2 orders) through the real judge job code
path and the openai client, against a local OpenAI-compatible server with 300 ms latency, at
concurrency 16 vs sequentially; then the same job again to count repeated calls (the cache).

    .venv/bin/python bench/judge.py

Runs on a throwaway embedded database (SQLite under a temporary folder)."""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ["EVALSITE_VAR_DIR"] = tempfile.mkdtemp(prefix="bench-judge-")
os.environ.pop("DATABASE_URL", None)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "evalsite.settings")
os.environ["LOG_LEVEL"] = "WARNING"

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402

from evalsite.annotation import services as annotation  # noqa: E402
from evalsite.catalog.models import Prompt, PromptSet, Response, System  # noqa: E402
from evalsite.core import jobs  # noqa: E402
from evalsite.judging import services  # noqa: E402
from evalsite.judging.models import JudgeConfig  # noqa: E402
from tests.openai_stub import OpenAIStub  # noqa: E402

N = 100
LATENCY = 0.3


def make_study():
    prompt_set = PromptSet.objects.create(name="bench")
    cand = System.objects.create(name="cand", kind="candidate", backend="imported")
    base = System.objects.create(name="base", backend="imported")
    for i in range(N):
        p = Prompt.objects.create(
            prompt_set=prompt_set, external_id=f"p{i}", messages=[{"role": "user", "content": f"Q{i}?"}]
        )
        Response.objects.create(system=cand, prompt=p, text=f"A careful answer to question {i}.")
        Response.objects.create(system=base, prompt=p, text=f"A short reply {i}.")
    study = annotation.create_study("bench", cand, [base], prompt_set, gold_rate=0)
    annotation.start_study(study)
    return study


def run(study, config) -> tuple[float, object]:
    job, _ = services.start_judge_job(study, config, enqueue=False)
    started = time.monotonic()
    jobs.execute(job.label(), job.pk, worker="bench")
    elapsed = time.monotonic() - started
    job.refresh_from_db()
    assert job.status == "done", job.error
    return elapsed, job


def main() -> None:
    call_command("migrate", verbosity=0)
    study = make_study()
    report: dict = {"judgments": 2 * N, "latency_s": LATENCY}
    with OpenAIStub(latency=LATENCY, responder=lambda body: "Answer A is significantly better.") as stub:
        common = {"base_url": stub.url, "api_key_env": "", "max_retries": 2, "timeout": 30}
        sequential = JudgeConfig.objects.create(name="seq", model="judge-seq", concurrency=1, **common)
        concurrent = JudgeConfig.objects.create(name="conc", model="judge-conc", concurrency=16, **common)
        report["sequential_s"], _ = run(study, sequential)
        report["concurrent_s"], job = run(study, concurrent)
        calls_before = sum(stub.calls.values())
        report["rerun_s"], again = run(study, concurrent)
        report["rerun_new_calls"] = sum(stub.calls.values()) - calls_before
        report["rerun_cache_hits"] = again.cache_hits
        report["server_calls"] = sum(stub.calls.values())
        # two judge models, each owing exactly one call per (comparison, order): anything more is a repeat
        report["duplicate_calls"] = report["server_calls"] - 2 * (2 * N)
        report["max_in_flight"] = stub.max_in_flight
    report["speedup"] = report["sequential_s"] / report["concurrent_s"]
    print(
        f"{2 * N} judgments at {LATENCY * 1000:.0f} ms latency: sequential {report['sequential_s']:.1f} s, "
        f"concurrency 16 {report['concurrent_s']:.2f} s -> {report['speedup']:.1f}x "
        f"(at most {report['max_in_flight']} in flight)"
    )
    print(
        f"the same job again: {report['rerun_new_calls']} new calls, {report['rerun_cache_hits']} cache hits, "
        f"{report['rerun_s']:.2f} s; duplicate calls over the whole run: {report['duplicate_calls']}"
    )
    out = ROOT / "bench" / "results" / "judge.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
