"""Annotation under load: gunicorn on PostgreSQL, 100 simulated annotators (each logged in,
doing next + submit with 1-2 s of "reading" between, i.e. real annotators at 15-30x speed) for
60 s, then a stress step with no pause at rising concurrency to find the highest sustained
submit rate. Then the database is checked: judgments equal accepted submits, no assignment
judged twice, no comparison beyond its overlap.

    .venv/bin/python bench/annotation.py [--annotators 100] [--seconds 60] [--workers 4]

Traffic goes to 127.0.0.1 only; every loop is bounded in time."""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
PG = "postgres://postgres@127.0.0.1:5432"
DB = "evalsite_bench"
PORT = 8765
BASE = f"http://127.0.0.1:{PORT}"
CSRF = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
ITEM = re.compile(r'action="/annotate/item/(\d+)/judge"')


def env() -> dict:
    e = dict(os.environ)
    e.update(
        {
            "DATABASE_URL": f"{PG}/{DB}",
            "DEBUG": "0",
            "SECRET_KEY": "bench-only-not-secret",
            "ALLOWED_HOSTS": "127.0.0.1",
            "SESSION_COOKIE_SECURE": "0",
            "CSRF_COOKIE_SECURE": "0",
            "CELERY_BROKER_URL": "redis://127.0.0.1:6379/14",
            "LOG_LEVEL": "WARNING",
            "DB_CONN_MAX_AGE": "600",
            "LOGIN_MAX_FAILURES": "1000",
        }
    )
    return e


SETUP = """
from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import User
from evalsite.annotation import services
from evalsite.catalog.models import Prompt, PromptSet, Response, System
from evalsite.core.accounts import annotators_group
N, A = {prompts}, {annotators}
ps = PromptSet.objects.create(name="bench")
cand = System.objects.create(name="cand", kind="candidate", backend="imported")
bases = [System.objects.create(name=f"base{{i}}", backend="imported") for i in range(2)]
prompts = Prompt.objects.bulk_create([Prompt(prompt_set=ps, external_id=f"p{{i}}",
    messages=[{{"role": "user", "content": f"Question {{i}}: how do I do thing {{i}}?"}}]) for i in range(N)])
text = "A reasonably long answer with **markdown**, a list:\\n\\n- one\\n- two\\n\\n```python\\nprint(1)\\n```\\n" * 6
Response.objects.bulk_create([Response(system=s, prompt=p, text=text) for s in [cand, *bases] for p in prompts])
study = services.create_study("bench", cand, bases, ps, overlap=3, gold_rate=0.05)
services.start_study(study)
hashed = make_password("bench-password")
users = User.objects.bulk_create([User(username=f"b{{i:03d}}", password=hashed) for i in range(A + 64)])
group = annotators_group()
for u in users:
    u.groups.add(group)
study.annotators.add(*users)
print("ready", study.comparisons.count())
"""

CHECK = """
import json
from django.db.models import Count
from evalsite.annotation.models import Assignment, Comparison, HumanJudgment
over = Comparison.objects.filter(is_gold=False).annotate(n=Count("judgments")).filter(n__gt=3).count()
double = HumanJudgment.objects.values("assignment").annotate(n=Count("id")).filter(n__gt=1).count()
print(json.dumps({"judgments": HumanJudgment.objects.count(), "over_overlap": over, "assignments_judged_twice": double,
                  "slots_over_overlap": Comparison.objects.filter(is_gold=False, slots_taken__gt=3).count()}))
"""


def manage(*args: str, stdin: str | None = None) -> str:
    cmd = [sys.executable, "manage.py", *args]
    out = subprocess.run(cmd, cwd=ROOT, env=env(), input=stdin, capture_output=True, text=True, timeout=900)
    if out.returncode:
        raise SystemExit(f"{' '.join(args)} failed:\n{out.stderr[-3000:]}")
    return out.stdout


def recreate_database() -> None:
    for sql in (f"DROP DATABASE IF EXISTS {DB}", f"CREATE DATABASE {DB}"):
        subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", sql], check=True, timeout=60)


class Annotator:
    def __init__(self, username: str):
        self.session = requests.Session()
        self.username = username
        page = self.session.get(f"{BASE}/accounts/login/", timeout=30)
        token = CSRF.search(page.text).group(1)
        reply = self.session.post(
            f"{BASE}/accounts/login/",
            timeout=30,
            allow_redirects=False,
            data={"username": username, "password": "bench-password", "csrfmiddlewaretoken": token},
        )
        assert reply.status_code == 302, f"login failed for {username}"

    def next(self) -> tuple[str, str] | None:
        """GET next: the annotator's wait for the next comparison's page."""
        reply = self.session.get(f"{BASE}/annotate/study/bench/next", timeout=30)
        match = ITEM.search(reply.text)
        if reply.status_code != 200 or not match:
            return None
        return match.group(1), CSRF.search(reply.text).group(1)

    def submit(self, item: str, token: str) -> int:
        reply = self.session.post(
            f"{BASE}/annotate/item/{item}/judge",
            timeout=30,
            allow_redirects=False,
            data={"choice": random.choice(["a", "b", "tie"]), "csrfmiddlewaretoken": token},
        )
        return reply.status_code


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.next: list[float] = []
        self.submit: list[float] = []
        self.accepted = 0
        self.errors = 0
        self.codes: dict[str, int] = {}
        self.seconds = 0.0

    def error(self, what: str) -> None:
        with self.lock:
            self.errors += 1
            self.codes[what] = self.codes.get(what, 0) + 1

    def add(self, kind: str, seconds: float) -> None:
        with self.lock:
            getattr(self, kind).append(seconds)


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] * 1000


def run_annotators(annotators: list[Annotator], seconds: float, pause: tuple[float, float], stats: Stats) -> None:
    deadline = time.monotonic() + seconds

    def loop(a: Annotator) -> None:
        rng = random.Random(a.username)
        time.sleep(rng.uniform(0, pause[1]))  # do not all start at once
        while time.monotonic() < deadline:
            try:
                t0 = time.monotonic()
                item = a.next()
                stats.add("next", time.monotonic() - t0)
                if item is None:
                    return
                time.sleep(rng.uniform(*pause))  # reading
                t0 = time.monotonic()
                code = a.submit(*item)
                stats.add("submit", time.monotonic() - t0)
                if code == 302:
                    with stats.lock:
                        stats.accepted += 1
                else:
                    stats.error(f"HTTP {code}")
            except requests.RequestException as exc:
                stats.error(type(exc).__name__)

    threads = [threading.Thread(target=loop, args=(a,), daemon=True) for a in annotators]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=seconds + 60)


def client_process(args: tuple) -> dict:
    """One load-generator process (several give the client more than one GIL)."""
    usernames, seconds, pause = args
    annotators = [Annotator(u) for u in usernames]  # logged in before the clock starts
    stats = Stats()
    started = time.monotonic()
    run_annotators(annotators, seconds, pause, stats)
    return {
        "seconds": time.monotonic() - started,
        "next": stats.next,
        "submit": stats.submit,
        "accepted": stats.accepted,
        "errors": stats.errors,
        "codes": stats.codes,
    }


def run_crowd(usernames: list[str], seconds: float, pause: tuple[float, float], processes: int) -> Stats:
    import multiprocessing as mp

    slices = [usernames[i::processes] for i in range(processes) if usernames[i::processes]]
    if len(slices) == 1:
        parts = [client_process((slices[0], seconds, pause))]
    else:
        with mp.get_context("fork").Pool(len(slices)) as pool:
            parts = pool.map(client_process, [(s, seconds, pause) for s in slices])
    total = Stats()
    total.seconds = max(part["seconds"] for part in parts)
    for part in parts:
        total.next += part["next"]
        total.submit += part["submit"]
        total.accepted += part["accepted"]
        total.errors += part["errors"]
        for code, n in part["codes"].items():
            total.codes[code] = total.codes.get(code, 0) + n
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--annotators", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--stress-seconds", type=float, default=15)
    parser.add_argument("--workers", type=int, default=4, help="gunicorn worker processes")
    parser.add_argument("--prompts", type=int, default=3000)
    parser.add_argument("--client-processes", type=int, default=1, help="load-generator processes")
    args = parser.parse_args()

    recreate_database()
    manage("migrate", "-v0")
    print(manage("shell", "--no-imports", stdin=SETUP.format(prompts=args.prompts, annotators=args.annotators)).strip())
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "evalsite.wsgi",
            "-b",
            f"127.0.0.1:{PORT}",
            "-w",
            str(args.workers),
            "-k",
            "gthread",
            "--threads",
            "8",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env(),
    )
    report: dict = {"annotators": args.annotators, "gunicorn_workers": args.workers, "cores": os.cpu_count()}
    try:
        for _ in range(100):
            try:
                if requests.get(f"{BASE}/healthz", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                time.sleep(0.2)
        crowd = [f"b{i:03d}" for i in range(args.annotators)]
        steady = run_crowd(crowd, args.seconds, (1.0, 2.0), args.client_processes)
        elapsed = steady.seconds
        report["steady"] = {
            "seconds": elapsed,
            "submits": steady.accepted,
            "errors": steady.errors,
            "submits_per_s": steady.accepted / elapsed,
            "next_p50_ms": pct(steady.next, 0.5),
            "next_p99_ms": pct(steady.next, 0.99),
            "submit_p50_ms": pct(steady.submit, 0.5),
            "submit_p99_ms": pct(steady.submit, 0.99),
            "error_kinds": steady.codes,
        }
        s = report["steady"]
        print(
            f"steady: {args.annotators} annotators, 1-2 s reading, {elapsed:.0f} s: {s['submits']} submits "
            f"({s['submits_per_s']:.1f}/s), {s['errors']} errors {s['error_kinds'] or ''}; "
            f"next p50 {s['next_p50_ms']:.0f} ms "
            f"p99 {s['next_p99_ms']:.0f} ms; submit p50 {s['submit_p50_ms']:.0f} ms p99 {s['submit_p99_ms']:.0f} ms"
        )
        accepted = steady.accepted
        report["stress"] = []
        for concurrency in (4, 8, 16, 32):
            users = [f"b{i:03d}" for i in range(concurrency)]
            stats = run_crowd(users, args.stress_seconds, (0.0, 0.0), min(concurrency, args.client_processes))
            took = stats.seconds
            accepted += stats.accepted
            row = {
                "concurrency": concurrency,
                "submits_per_s": stats.accepted / took,
                "errors": stats.errors,
                "submit_p99_ms": pct(stats.submit, 0.99),
                "next_p99_ms": pct(stats.next, 0.99),
            }
            report["stress"].append(row)
            print(
                f"stress, no pause, {concurrency} at once: {row['submits_per_s']:.1f} submits/s, "
                f"next p99 {row['next_p99_ms']:.0f} ms, submit p99 {row['submit_p99_ms']:.0f} ms, {stats.errors} errors"
            )
        best = max(report["stress"], key=lambda r: r["submits_per_s"])
        report["best_submits_per_s"] = best["submits_per_s"]
        print(f"highest sustained submit rate: {best['submits_per_s']:.1f}/s at concurrency {best['concurrency']}")
    finally:
        server.terminate()
        server.wait(timeout=30)
    check = json.loads(manage("shell", "--no-imports", stdin=CHECK).strip().splitlines()[-1])
    check["accepted_submits"] = accepted
    report["check"] = check
    ok = check["judgments"] == accepted and not check["over_overlap"] and not check["assignments_judged_twice"]
    print(
        f"database: {check['judgments']} judgments for {accepted} accepted submits; "
        f"{check['assignments_judged_twice']} assignments judged twice; {check['over_overlap']} comparisons beyond "
        f"their overlap -> {'OK' if ok else 'MISMATCH'}"
    )
    out = ROOT / "bench" / "results" / "annotation.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written to {out}")
    if not ok:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
