"""Judge throughput: 200 judgments (100 comparisons x 2 orders) through the real judge job code
path and the openai client, against a local OpenAI-compatible server with 300 ms latency, at
concurrency 16 vs sequentially; then the same job again to count repeated calls (the cache).

Then the bundled judge (SmolLM2-135M behind serve_openai, as the demo runs it) on comparisons like
the demo's (the shipped test prompts, answered by the bundled model twice: sampled with LIMA's
settings and greedy with fewer tokens), with the `score` method (the labels' probabilities, one
forward pass) and the `text` method (the demo's old judge: up to 64 generated tokens, parsed):
unreadable share, seconds per verdict, and how often the two methods agree.

    .venv/bin/python bench/judge.py [--prompts 61] [--skip-bundled]
    .venv/bin/python bench/judge.py --smoke   # 10 comparisons at 20 ms, no bundled judge, nothing written

Runs on a throwaway embedded database (SQLite under a temporary folder)."""

from __future__ import annotations

import argparse
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

from evalsite.annotation import studies  # noqa: E402
from evalsite.catalog.models import Prompt, PromptSet, Response, System  # noqa: E402
from evalsite.core import jobs  # noqa: E402
from evalsite.judging import services  # noqa: E402
from evalsite.judging.models import JudgeConfig, JudgeOutcome  # noqa: E402
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
    study = studies.create_study("bench", cand, [base], prompt_set, gold_rate=0)
    studies.start_study(study)
    return study


def run(study, config) -> tuple[float, object]:
    job, _ = services.start_judge_job(study, config, enqueue=False)
    started = time.monotonic()
    jobs.execute(job.label(), job.pk, worker="bench")
    elapsed = time.monotonic() - started
    job.refresh_from_db()
    assert job.status == "done", job.error
    return elapsed, job


def bundled(report: dict, n_prompts: int, concurrency: int) -> None:
    import threading

    from evalsite.judging.results import judge_summary
    from generation.bundled import bundled_backend_config
    from generation.config import SamplingConfig
    from generation.hf_local import HFLocalBackend
    from generation.server import make_server
    from generation.types import GenerationRequest

    config = bundled_backend_config()
    if config is None:
        print("the bundled model is not installed: skipped")
        return
    backend = HFLocalBackend(config)
    prompts = [json.loads(line) for line in (ROOT / "data/test_prompts.jsonl").open()][:n_prompts]
    prompt_set = PromptSet.objects.create(name="bundled")
    rows = [
        Prompt.objects.create(prompt_set=prompt_set, external_id=p["id"], messages=p["messages"]) for p in prompts
    ]
    started = time.monotonic()
    answers = {}
    for name, sampling in (
        ("sampled", SamplingConfig(max_new_tokens=96, seed=1)),
        ("greedy", SamplingConfig(temperature=0.0, repetition_penalty=1.0, max_new_tokens=48)),
    ):
        kind = "candidate" if name == "sampled" else "baseline"
        system = System.objects.create(name=name, kind=kind, backend="imported")
        requests = [GenerationRequest(key=r.pk, messages=r.messages) for r in rows]
        for result in backend.generate(requests, sampling):
            Response.objects.create(system=system, prompt_id=result.key, text=result.text)
        answers[name] = system
    report["bundled_generation_s"] = round(time.monotonic() - started, 1)
    study = studies.create_study("bundled", answers["sampled"], [answers["greedy"]], prompt_set, gold_rate=0)
    studies.start_study(study)
    server = make_server(backend, "smollm2-135m-instruct", port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    common = {"model": "smollm2-135m-instruct", "base_url": url, "api_key_env": "", "is_local": True}
    report["local_judge_concurrency"] = concurrency
    results = {}
    try:
        for method in ("score", "text"):
            config = JudgeConfig.objects.create(
                name=f"local-{method}", method=method, max_tokens=64, concurrency=concurrency, **common
            )
            seconds, job = run(study, config)
            summary = judge_summary(job, bootstrap=0)
            results[method] = (job, summary)
            report[f"{method}_unreadable_share"] = round(summary["unreadable_share"], 4)
            report[f"{method}_seconds_per_verdict"] = round(seconds / summary["verdicts"], 3)
            report[f"{method}_verdicts"] = summary["verdicts"]
            report[f"{method}_seconds"] = round(seconds, 1)
    finally:
        server.shutdown()
    by_method = {
        method: dict(JudgeOutcome.objects.filter(job=job).values_list("comparison_id", "outcome"))
        for method, (job, _) in results.items()
    }
    both = [c for c, o in by_method["text"].items() if o and by_method["score"].get(c)]
    agree = sum(1 for c in both if by_method["text"][c] == by_method["score"][c])
    report["methods_agreement"] = round(agree / len(both), 3) if both else None
    report["methods_both_counted"] = len(both)
    report["local_judge_seconds"] = report["score_seconds"]
    report["score_over_text_speed"] = round(report["text_seconds_per_verdict"] / report["score_seconds_per_verdict"], 1)
    print(
        f"bundled judge on {len(rows)} comparisons ({2 * len(rows)} verdicts each): score {report['score_seconds']} s, "
        f"{report['score_seconds_per_verdict']} s/verdict, unreadable {report['score_unreadable_share']:.0%}; "
        f"text {report['text_seconds']} s, {report['text_seconds_per_verdict']} s/verdict, unreadable "
        f"{report['text_unreadable_share']:.0%}; score is {report['score_over_text_speed']}x faster; the two agree on "
        f"{report['methods_agreement']} of {len(both)} comparisons both counted"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prompts", type=int, default=61, help="bundled judge: how many test prompts")
    parser.add_argument("--skip-bundled", action="store_true")
    parser.add_argument("--concurrency", type=int, default=8, help="the local judge's (the demo's: 8)")
    parser.add_argument("--smoke", action="store_true", help="10 comparisons at 20 ms, nothing written")
    args = parser.parse_args()
    global N, LATENCY
    if args.smoke:  # that it still runs (make test), not a measurement
        N, LATENCY, args.skip_bundled = 10, 0.02, True
    call_command("migrate", verbosity=0)
    report: dict = {"load_1min": os.getloadavg()[0]}
    if not args.skip_bundled:
        bundled(report, args.prompts, args.concurrency)
    study = make_study()
    report.update({"judgments": 2 * N, "latency_s": LATENCY})
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
    report["load_1min_after"] = os.getloadavg()[0]
    if args.smoke:
        return
    out = ROOT / "bench" / "results" / "judge.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
