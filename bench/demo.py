"""`make demo` as a newcomer runs it, measured: each stage's time, the estimate the demo printed
against what it took, the peak memory of everything it started (summed over its processes as
proportional set size, so pages shared between a worker and its children count once) and of each
process, and then the site it serves: the memory of its processes once idle (the web server, the
batch worker and its children, the live worker).

Run quiet, and with one core busy elsewhere (`--busy`: a process spinning on one core for the
whole run, as a laptop's browser or another job would); each run fills its own key of
bench/results/demo.json. A fresh folder each run (its own SQLite database and filesystem broker),
nothing reused (the int4 conversion runs again, as on a newcomer's machine).

    .venv/bin/python bench/demo.py [--busy] [--memory small]   # small: as on a machine under 12 GiB
    .venv/bin/python bench/demo.py --smoke   # a tiny model and tiny settings, nothing written"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

STAGE = re.compile(r"^\[(\d+)/(\d+)\] (.*): done in ([\d.]+) s")
ESTIMATE = re.compile(r"^about (\d+) (min|s) to go")
MACHINE = re.compile(r"^this machine is ([\d.]+)x slower .*expect about (\d+) (min|s)")


class Sampler(threading.Thread):
    """Every ``every`` seconds: each process of the tree under ``root`` (its RSS, and the tree's
    summed PSS), keeping the peaks."""

    def __init__(self, root: int, every: float = 0.5):
        super().__init__(daemon=True)
        self.root, self.every = root, every
        self.peak_total = 0
        self.peak_by_name: dict[str, int] = {}
        self.samples: list[tuple[float, int]] = []  # (monotonic time, the tree's PSS)
        self.stopping = threading.Event()

    def tree(self) -> list[psutil.Process]:
        try:
            parent = psutil.Process(self.root)
            return [parent, *parent.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def run(self) -> None:
        while not self.stopping.is_set():
            total = 0
            for proc in self.tree():
                try:
                    info = proc.memory_full_info()
                    name = describe(proc)
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue
                total += info.pss
                self.peak_by_name[name] = max(self.peak_by_name.get(name, 0), info.rss)
            self.peak_total = max(self.peak_total, total)
            self.samples.append((time.monotonic(), total))
            self.stopping.wait(self.every)

    def peak_between(self, start: float, end: float) -> int:
        return max((total for t, total in self.samples if start <= t <= end), default=0)


def describe(proc: psutil.Process) -> str:
    """A process by what it is: the demo, the local judge's server, a worker (or one of its pool's
    processes), the web server."""
    try:
        line = " ".join(proc.cmdline())
        parent = proc.parent()
        pooled = parent is not None and "celery" in " ".join(parent.cmdline())
    except psutil.NoSuchProcess:
        return "gone"
    for marker, name in (
        ("serve_openai", "local judge server (serve_openai)"),
        ("-n live@", "live worker"),
        ("-n demo@", "batch worker"),
        ("runserver", "web server"),
        ("manage.py demo", "demo command"),
    ):
        if marker in line:
            return name + (" (pool process)" if pooled else "")
    return proc.name()


def answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


def mib(n: int) -> int:
    return round(n / 2**20)


def environment(folder: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEMO_")}
    for key in ("DATABASE_URL", "CELERY_BROKER_URL"):
        env.pop(key, None)
    env.update(
        {
            "EVALSITE_VAR_DIR": str(folder / "var"),
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def tiny_setup(env: dict[str, str], folder: Path, judge_url: str) -> None:
    """The smoke form's world: a tiny random model, three test prompts, a stub judge."""
    from tests.tiny_models import CHAT, save_tiny

    base = save_tiny(folder / "tiny")
    train_file = folder / "chat.jsonl"
    train_file.write_text(
        "".join(
            json.dumps({"id": f"c{i}", "messages": [{"role": "user", "content": q}], "reference_answer": a}) + "\n"
            for i, (q, a) in enumerate(CHAT)
        )
    )
    test_file = folder / "test.jsonl"
    test_file.write_text(
        "".join(
            f'{{"id": "t{i}", "messages": [{{"role": "user", "content": "tell me a joke {i}"}}]}}\n' for i in range(3)
        )
    )
    for command in (
        ["migrate", "-v0"],
        ["systems", "add", "tiny", "--backend", "hf_local", "--model-path", str(base)],
        ["import_prompts", str(test_file), "--set", "tiny-test"],
        ["judge_config", "add", "stub", "--model", "gpt-4", "--base-url", judge_url, "--api-key-env", ""],
    ):
        subprocess.run([sys.executable, "manage.py", *command], cwd=ROOT, env=env, check=True, capture_output=True)
    env.update(
        {
            "DEMO_BASE_SYSTEM": "tiny",
            "DEMO_RECIPE_SET": "epochs=1 lr=1e-3 final_lr=1e-4 batch_size=2 micro_batch_size=2 max_length=64",
            "DEMO_TRAIN_FILE": str(train_file),
            "DEMO_TEST_SET": "tiny-test",
            "DEMO_MAX_NEW_TOKENS": "4",
            "DEMO_JUDGE": "stub",
            "DEMO_ANNOTATORS": "1",
        }
    )


def batch(env: dict[str, str]) -> dict:
    """`manage.py demo --no-serve`: its stages, estimates and peak memory."""
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "demo", "--no-serve"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    sampler = Sampler(proc.pid)
    sampler.start()
    stages, said = [], {}
    begun = time.monotonic()
    assert proc.stdout is not None
    for line in proc.stdout:
        line = line.rstrip()
        if line.endswith(" ..."):  # a stage begins
            begun = time.monotonic()
        elif match := STAGE.match(line):
            peak = mib(sampler.peak_between(begun, time.monotonic()))
            stages.append({"stage": match.group(3), "seconds": float(match.group(4)), "peak_pss_mib": peak})
        elif (match := ESTIMATE.match(line)) and "estimate_s" not in said:
            said["estimate_s"] = int(match.group(1)) * (60 if match.group(2) == "min" else 1)
        elif match := MACHINE.match(line):
            said["machine_factor"] = float(match.group(1))
            said["machine_estimate_s"] = int(match.group(2)) * (60 if match.group(3) == "min" else 1)
    code = proc.wait()
    sampler.stopping.set()
    sampler.join()
    if code:
        raise SystemExit(f"manage.py demo --no-serve failed ({code})")
    return {
        "wall_s": round(time.monotonic() - started, 1),
        "stages": stages,
        **said,
        "peak_total_pss_mib": mib(sampler.peak_total),
        "peak_rss_mib_by_process": {k: mib(v) for k, v in sorted(sampler.peak_by_name.items())},
    }


def served(env: dict[str, str], idle_seconds: float) -> dict:
    """The site the demo serves: its processes' memory once they are idle."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "demo", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 180
        while not answers(f"http://127.0.0.1:{port}/healthz"):
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit("the demo's site did not answer")
            time.sleep(0.5)
        log = Path(env["EVALSITE_VAR_DIR"]) / "logs" / "live-worker.log"
        deadline = time.monotonic() + 180
        while " ready." not in (log.read_text(errors="replace") if log.exists() else ""):
            if time.monotonic() > deadline:
                raise SystemExit("the live worker did not start")
            time.sleep(0.5)
        time.sleep(idle_seconds)
        by_name: dict[str, int] = {}
        total = 0
        for child in [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]:
            info = child.memory_full_info()
            total += info.pss
            name = describe(child)
            by_name[name] = by_name.get(name, 0) + info.pss
        return {
            "idle_total_pss_mib": mib(total),
            "idle_pss_mib_by_process": {k: mib(v) for k, v in sorted(by_name.items())},
        }
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)


def machine_probe(env: dict) -> tuple[float, float]:
    """The demo's own measure of this machine (evalsite.pipeline.stages.probe: one thread's time
    for a fixed piece of matrix work), taken before the run, and what it was where the stages' times
    were measured (PROBE_SECONDS): runs on different hosts compare by it."""
    code = "from evalsite.pipeline.stages import PROBE_SECONDS, probe; print(PROBE_SECONDS, probe())"
    done = subprocess.run(
        [sys.executable, "manage.py", "shell", "--no-imports", "-c", code],
        cwd=ROOT, env=env, capture_output=True, text=True, check=True, timeout=300,
    )  # fmt: skip
    reference, now = done.stdout.split()[-2:]
    return float(now), float(reference)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--busy", action="store_true", help="one core spinning elsewhere for the whole run")
    parser.add_argument("--smoke", action="store_true", help="a tiny model and tiny settings, nothing written")
    parser.add_argument(
        "--memory", choices=("auto", "full", "small"), default="auto", help="DEMO_MEMORY: small is what a laptop gets"
    )
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="demo-bench-"))
    env = environment(folder)
    if args.memory != "auto":
        env["DEMO_MEMORY"] = args.memory
    burner = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if args.busy else None
    load = os.getloadavg()
    probe_s, reference_s = machine_probe(env)
    try:
        if args.smoke:
            from tests.openai_stub import OpenAIStub

            with OpenAIStub(responder=lambda body: "Answer A is significantly better.") as judge:
                tiny_setup(env, folder, judge.url)
                result = {"batch": batch(env), "served": served(env, idle_seconds=2)}
        else:
            result = {"batch": batch(env), "served": served(env, idle_seconds=20)}
    finally:
        if burner is not None:
            burner.kill()
            burner.wait()
    load = tuple(round((a + b) / 2, 2) for a, b in zip(load, os.getloadavg(), strict=True))
    b, s = result["batch"], result["served"]
    for stage in b["stages"]:
        print(f"  {stage['stage']:<60} {stage['seconds']:8.1f} s, peak {stage['peak_pss_mib']:6} MiB")
    estimate = b.get("machine_estimate_s", b.get("estimate_s"))
    ratio = f"{b['wall_s'] / estimate:.2f}x the estimate it printed ({estimate} s)" if estimate else "no estimate"
    print(f"batch stages: {b['wall_s']} s, {ratio}; peak memory {b['peak_total_pss_mib']} MiB (PSS, all processes)")
    print(f"  peak RSS by process: {b['peak_rss_mib_by_process']}")
    print(f"served, idle: {s['idle_total_pss_mib']} MiB (PSS) by {s['idle_pss_mib_by_process']}; load {load}")
    print(f"this machine's probe: {probe_s:.3f} s (the stages' measured times were taken where it was {reference_s} s)")
    if args.smoke:
        return
    key = ("one core busy" if args.busy else "quiet") + (f", {args.memory} memory" if args.memory != "auto" else "")
    out = ROOT / "bench" / "results" / "demo.json"
    results = json.loads(out.read_text()) if out.exists() else {}
    results[key] = {
        **result,
        "probe_s": probe_s,
        "probe_reference_s": reference_s,
        "load_average": load,
        "date": time.strftime("%Y-%m-%d"),
        "command": " ".join(sys.argv),
    }
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out} [{key}]")


if __name__ == "__main__":
    main()
