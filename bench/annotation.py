"""Annotation under load: gunicorn on PostgreSQL, 100 simulated annotators (each logged in,
doing next + submit with 1-2 s of "reading" between, i.e. real annotators at 15-30x speed) for
60 s (the web server's CPU per next + submit counted after the logins); then a crowd nearer a real
one, 1,000 annotators reading 20-40 s per item (about 33 submits/s) for 120 s; then a stress step
with no pause at rising concurrency to find the highest sustained submit rate. Then the database is
checked: judgments equal accepted submits, no assignment
judged twice, no comparison beyond its overlap.

    .venv/bin/python bench/annotation.py [--annotators 100] [--seconds 60] [--workers 4] [--crowd 1000]
    .venv/bin/python bench/annotation.py --smoke   # 4 annotators, a second or two each step, nothing written

Traffic goes to 127.0.0.1 only; every loop is bounded in time."""

from __future__ import annotations

import argparse
import gc
import http.client
import json
import os
import random
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlencode

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench import private_redis  # noqa: E402

PG = "postgres://postgres@127.0.0.1:5432"
DB = "evalsite_bench"
PORT = 8765
BASE = f"http://127.0.0.1:{PORT}"
REDIS = ""  # the bench's own redis-server (bench/private_redis.py), started by main()
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
            "CELERY_BROKER_URL": f"{REDIS}/1",
            # as deployed: a cache shared by the web processes (login limits, sessions read from it)
            "CACHE_URL": f"{REDIS}/0",
            "LOG_LEVEL": "WARNING",
            "DB_CONN_MAX_AGE": "600",
            "LOGIN_MAX_FAILURES": "1000",
        }
    )
    return e


SETUP = """
from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import User
from evalsite.annotation import studies
from evalsite.catalog.models import Prompt, PromptSet, Response, System
from evalsite.core.accounts import annotators_group
N, A = {prompts}, {annotators}
ps = PromptSet.objects.create(name="bench")
cand = System.objects.create(name="cand", kind="candidate", backend="imported")
bases = [System.objects.create(name=f"base{{i}}", backend="imported") for i in range(2)]
prompts = Prompt.objects.bulk_create([Prompt(prompt_set=ps, external_id=f"p{{i}}",
    messages=[{{"role": "user", "content": f"Question {{i}}: how do I do thing {{i}}?"}}]) for i in range(N)])
def answer(k, i):
    # a distinct answer per system and prompt, about as long as LIMA's (~2,000 characters), with
    # the Markdown the page renders: paragraphs, a list, a code block, a table
    steps = "\\n".join(f"{{n}}. Step {{n}} for case {{i}}: check the {{w}} and note what changed." for n, w in
                        enumerate(["input", "settings", "output", "logs", "limits"][: 3 + (i + k) % 3], 1))
    rows = "\\n".join(f"| option {{j}} | {{(i * 7 + j * k) % 100}} ms | {{'yes' if (i + j) % 2 else 'no'}} |"
                     for j in range(4))
    return (f"Here is how to do thing {{i}} (answer {{k}}). The **short version**: start small, measure, "
            f"and only then change the {{'cache' if i % 2 else 'index'}}.\\n\\n{{steps}}\\n\\n"
            f"```python\\ndef thing_{{i}}(x):\\n    return x * {{k + 2}}  # the core of it\\n```\\n\\n"
            f"| choice | cost | default |\\n|---|---|---|\\n{{rows}}\\n\\n"
            + f"A longer explanation of case {{i}}, with *emphasis* and a `literal`, follows. " * 20)
Response.objects.bulk_create([Response(system=s, prompt=p, text=answer(k, i)) for k, s in enumerate([cand, *bases])
                              for i, p in enumerate(prompts)])
study = studies.create_study("bench", cand, bases, ps, overlap=3, gold_rate=0.05, assignment="{assignment}")
studies.start_study(study)
if {sampled}:  # a sampled study (`study sample`): every comparison drawn, walked in the study's order
    studies.plan_sampling(study, {{}}, 1.0)
hashed = make_password("bench-password")
users = User.objects.bulk_create([User(username=f"b{{i:03d}}", password=hashed) for i in range(A + 64)])
crowd = User.objects.bulk_create([User(username=f"c{{i:04d}}", password=hashed) for i in range({crowd})])
group = annotators_group()
group.user_set.add(*users, *crowd)
study.annotators.add(*users, *crowd)
# the crowd's sessions made here, as a login would make them: 1,000 password hashes (~0.2 s of CPU
# each) would take minutes of the server before the crowd starts and say nothing about the cycle
import json
from importlib import import_module
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
store = import_module(settings.SESSION_ENGINE).SessionStore
sessions = {{}}
for u in crowd:
    session = store()
    session.update({{SESSION_KEY: str(u.pk), BACKEND_SESSION_KEY: settings.AUTHENTICATION_BACKENDS[0],
                    HASH_SESSION_KEY: u.get_session_auth_hash()}})
    session.create()
    sessions[u.username] = session.session_key
print("ready", study.comparisons.count())
print("sessions", json.dumps(sessions))
"""

CLAIMS = """
# Claiming compared in one run, in-process, on the same study: ours (a random start on the primary
# key, one conditional UPDATE of a comparison's slots) against the textbook way (the open pool
# locked with SELECT ... FOR UPDATE, ORDER BY random() LIMIT 1). Each thread: claim, then submit.
import json, random, threading, time
from datetime import timedelta
from django.contrib.auth.models import User
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone
from evalsite.annotation import answers, claims
from evalsite.annotation.models import Assignment, Comparison, Study
study = Study.objects.get(name="bench")

def naive_claim(study, user, rng):
    # the same work around the choice of item as ours: the open claim looked for, the page loaded
    if current := claims.open_claim(study, user):
        return current
    with transaction.atomic():
        c = (Comparison.objects.select_for_update()
             .filter(study=study, is_gold=False, slots_taken__lt=study.overlap)
             .exclude(assignments__annotator=user).order_by("?").first())
        if c is None:
            return None
        Comparison.objects.filter(pk=c.pk).update(slots_taken=F("slots_taken") + 1)
        now = timezone.now()
        a = Assignment.objects.create(comparison=c, study_id=c.study_id, annotator=user,
                                      candidate_on_left=bool(rng.getrandbits(1)),
                                      claimed_at=now, expires_at=now + timedelta(minutes=30), shown_at=now)
    a.comparison = claims.comparison_page(c.pk)
    return a

def run(claim, users, seconds):
    done = []
    def loop(user):
        rng, n, deadline = random.Random(user.pk), 0, time.monotonic() + seconds
        while time.monotonic() < deadline:
            a = claim(study, user, rng)
            if a is None:
                break
            answers.submit(a.pk, user, "tie")
            n += 1
        done.append(n)
        connection.close()
    threads = [threading.Thread(target=loop, args=(u,)) for u in users]
    t0 = time.monotonic()
    for t in threads: t.start()
    for t in threads: t.join()
    return sum(done) / (time.monotonic() - t0)

users = list(User.objects.filter(username__startswith="b1").order_by("username"))[:{threads} * 2]
ours = run(lambda s, u, rng: claims.claim_next(s, u, rng=rng, member_checked=True), users[:{threads}], {seconds})
naive = run(naive_claim, users[{threads}:], {seconds})
print(json.dumps({{"threads": {threads}, "ours_per_s": ours, "naive_per_s": naive,
                  "ratio": ours / naive if naive else None}}))
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
    """One annotator's browser: a keep-alive connection and its cookies. Plain http.client rather
    than requests: on a 2-core machine the load generator's CPU is taken from the server's."""

    def __init__(self, username: str, session: str | None = None):
        self.username = username
        self.cookies: dict[str, str] = {}
        self.conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=30)
        if session is not None:  # logged in already (the crowd's sessions are made in the set-up)
            self.cookies["sessionid"] = session
            return
        page = self.request("GET", "/accounts/login/")
        token = CSRF.search(page[1]).group(1)
        status, _ = self.request(
            "POST",
            "/accounts/login/",
            {"username": username, "password": "bench-password", "csrfmiddlewaretoken": token},
        )
        assert status == 302, f"login failed for {username}"

    def request(self, method: str, path: str, form: dict | None = None) -> tuple[int, str]:
        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())}
        body = None
        if form is not None:
            body = urlencode(form)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            headers["Referer"] = BASE + path  # as a browser sends it (Django checks it over HTTPS only)
        for attempt in (1, 2):
            try:
                self.conn.request(method, path, body=body, headers=headers)
                reply = self.conn.getresponse()
                text = reply.read().decode()
                break
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                # the server closed an idle keep-alive connection: a browser reconnects and resends
                self.conn.close()
                if attempt == 2:
                    raise
        for header, value in reply.getheaders():
            if header.lower() == "set-cookie":
                name, _, rest = value.partition("=")
                self.cookies[name] = rest.split(";", 1)[0]
        return reply.status, text

    def next(self) -> tuple[str, str] | None:
        """GET next: the annotator's wait for the next comparison's page."""
        status, text = self.request("GET", "/annotate/study/bench/next")
        match = ITEM.search(text)
        if status != 200 or not match:
            return None
        return match.group(1), CSRF.search(text).group(1)

    def submit(self, item: str, token: str) -> int:
        form = {"choice": random.choice(["a", "b", "tie"]), "csrfmiddlewaretoken": token}
        return self.request("POST", f"/annotate/item/{item}/judge", form)[0]


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


TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def cpu_snapshot(server_pid: int) -> dict[str, float]:
    """CPU seconds used so far by the web server's processes, by PostgreSQL's, and by the whole
    machine (busy time over all cores), to split a step's CPU between them."""
    procs = {int(d.name): _stat(int(d.name)) for d in Path("/proc").iterdir() if d.name.isdigit()}
    server = {server_pid} | {pid for pid, st in procs.items() if st and int(st[1]) == server_pid}
    postgres = {pid for pid in procs if _comm(pid) == "postgres"}

    def used(pids: set[int]) -> float:
        return sum((int(procs[p][11]) + int(procs[p][12])) / TICK for p in pids if procs.get(p))

    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    busy = (sum(fields) - fields[3] - fields[4]) / TICK  # all but idle and iowait
    return {"server": used(server), "postgres": used(postgres), "machine": busy}


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
            except OSError as exc:
                stats.error(type(exc).__name__)

    threads = [threading.Thread(target=loop, args=(a,), daemon=True) for a in annotators]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=seconds + 60)


_LOGGED_IN = None  # a barrier: every load-generator process logged in, and the parent has read the CPU


def client_process(args: tuple) -> dict:
    """One load-generator process (several give the client more than one GIL)."""
    usernames, seconds, pause = args
    # logged in before the clock starts (or given their sessions: name -> session key)
    annotators = [Annotator(u, usernames[u]) if isinstance(usernames, dict) else Annotator(u) for u in usernames]
    # the load generator stands in for browsers on other machines: a full garbage collection of
    # its heap would stall all its threads at once and be counted as the server's latency
    gc.collect()
    gc.freeze()
    if _LOGGED_IN is not None:
        _LOGGED_IN.wait()  # the logins' CPU (a password hash each, ~0.2 s) is not the cycle's
        _LOGGED_IN.wait()
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


def run_crowd(
    usernames: list[str] | dict[str, str], seconds: float, pause: tuple[float, float], processes: int, on_ready=None
) -> Stats:
    """The crowd logs in, then ``on_ready()`` is called (to read the CPU counters after the logins),
    then it annotates for ``seconds``."""
    import multiprocessing as mp

    global _LOGGED_IN
    names = list(usernames)
    slices = [names[i::processes] for i in range(processes) if names[i::processes]]
    if isinstance(usernames, dict):
        slices = [{name: usernames[name] for name in part} for part in slices]
    context = mp.get_context("fork")
    _LOGGED_IN = context.Barrier(len(slices) + 1)
    try:
        with context.Pool(len(slices)) as pool:  # processes, even one: the parent waits at the barrier
            pending = pool.map_async(client_process, [(s, seconds, pause) for s in slices])
            _LOGGED_IN.wait(timeout=600)
            if on_ready is not None:
                on_ready()
            _LOGGED_IN.wait(timeout=600)
            parts = pending.get(timeout=seconds + 600)
    finally:
        _LOGGED_IN = None
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
    parser.add_argument("--crowd", type=int, default=1000, help="annotators of the crowd profile (0: none)")
    parser.add_argument("--assignment", default="uniform", choices=["uniform", "adaptive"])
    parser.add_argument("--sampled", action="store_true", help="a sampled study (adaptive, in its drawn order)")
    parser.add_argument("--crowd-seconds", type=float, default=120)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "annotation.json"))
    parser.add_argument("--claim-seconds", type=float, default=10, help="each claiming variant, in-process")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=8, help="threads per gunicorn worker")
    parser.add_argument("--worker-class", default="gthread", help="gunicorn worker class")
    parser.add_argument("--prompts", type=int, default=5000, help="per baseline (2), overlap 3: enough for every step")
    parser.add_argument("--client-processes", type=int, default=1, help="load-generator processes")
    parser.add_argument("--smoke", action="store_true", help="a few annotators for a few seconds, nothing written")
    args = parser.parse_args()
    if args.smoke:  # that it still runs (make test), not a measurement
        args.annotators, args.seconds, args.stress_seconds, args.crowd, args.crowd_seconds = 4, 2, 1, 0, 0
        args.claim_seconds, args.workers, args.threads, args.prompts = 1, 1, 4, 150

    global REDIS
    REDIS = private_redis.start()  # never the machine's shared Redis
    recreate_database()
    manage("migrate", "-v0")
    ready, sessions = (
        manage(
            "shell",
            "--no-imports",
            stdin=SETUP.format(
                prompts=args.prompts,
                annotators=args.annotators,
                crowd=args.crowd,
                assignment=args.assignment,
                sampled=args.sampled,
            ),
        )
        .strip()
        .splitlines()[-2:]
    )
    print(ready)
    crowd_sessions = json.loads(sessions.split(" ", 1)[1])
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
            args.worker_class,
            "--threads",
            str(args.threads),
            # longer than the 1-2 s of reading, as a proxy in front would keep it: with gunicorn's
            # 2 s default an idle connection may close just as the client sends on it
            "--keep-alive",
            "30",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env(),
    )
    report: dict = {
        "assignment": "sampled" if args.sampled else args.assignment,
        "annotators": args.annotators,
        "gunicorn_workers": args.workers,
        "worker_class": args.worker_class,
        "threads": args.threads,
        "cores": os.cpu_count(),
    }
    try:
        for _ in range(100):
            try:
                if requests.get(f"{BASE}/healthz", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                time.sleep(0.2)
        crowd = [f"b{i:03d}" for i in range(args.annotators)]
        snapshots = []
        steady = run_crowd(
            crowd, args.seconds, (1.0, 2.0), args.client_processes, lambda: snapshots.append(cpu_snapshot(server.pid))
        )
        before, after = snapshots[0], cpu_snapshot(server.pid)
        elapsed = steady.seconds
        used = {k: after[k] - before[k] for k in before}
        per_submit = {k: 1000 * v / max(1, steady.accepted) for k, v in used.items()}
        per_submit["load generator and rest"] = per_submit["machine"] - per_submit["server"] - per_submit["postgres"]
        report["web_cpu_ms_per_cycle"] = per_submit["server"]
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
            "cpu_ms_per_submit": per_submit,
            "cores_busy": used["machine"] / elapsed,
        }
        s = report["steady"]
        print(
            f"steady: {args.annotators} annotators, 1-2 s reading, {elapsed:.0f} s: {s['submits']} submits "
            f"({s['submits_per_s']:.1f}/s), {s['errors']} errors {s['error_kinds'] or ''}; "
            f"next p50 {s['next_p50_ms']:.0f} ms "
            f"p99 {s['next_p99_ms']:.0f} ms; submit p50 {s['submit_p50_ms']:.0f} ms p99 {s['submit_p99_ms']:.0f} ms"
        )
        print(
            f"CPU per next + submit: web server {per_submit['server']:.1f} ms, "
            f"PostgreSQL {per_submit['postgres']:.1f} ms, "
            f"load generator and the rest {per_submit['load generator and rest']:.1f} ms; "
            f"{s['cores_busy']:.2f} of {os.cpu_count()} cores busy"
        )
        accepted = steady.accepted
        if args.crowd:
            # nearer a real crowd: many annotators, each reading 20-40 s per item (~33 submits/s at 1,000)
            snapshots = []
            crowd = run_crowd(
                crowd_sessions, args.crowd_seconds, (20.0, 40.0), 1, lambda: snapshots.append(cpu_snapshot(server.pid))
            )
            used = {k: cpu_snapshot(server.pid)[k] - snapshots[0][k] for k in snapshots[0]}
            accepted += crowd.accepted
            report["crowd"] = {
                "annotators": args.crowd,
                "seconds": crowd.seconds,
                "submits": crowd.accepted,
                "errors": crowd.errors,
                "error_kinds": crowd.codes,
                "submits_per_s": crowd.accepted / crowd.seconds,
                "next_p50_ms": pct(crowd.next, 0.5),
                "next_p99_ms": pct(crowd.next, 0.99),
                "submit_p50_ms": pct(crowd.submit, 0.5),
                "submit_p99_ms": pct(crowd.submit, 0.99),
                "web_cpu_ms_per_cycle": 1000 * used["server"] / max(1, crowd.accepted),
                "cores_busy": used["machine"] / crowd.seconds,
            }
            c = report["crowd"]
            report["crowd_next_p99_ms"] = c["next_p99_ms"]
            print(
                f"crowd: {args.crowd} annotators, 20-40 s reading, {c['seconds']:.0f} s: {c['submits']} submits "
                f"({c['submits_per_s']:.1f}/s), {c['errors']} errors {c['error_kinds'] or ''}; next p50 "
                f"{c['next_p50_ms']:.0f} ms p99 {c['next_p99_ms']:.0f} ms; submit p50 {c['submit_p50_ms']:.0f} ms "
                f"p99 {c['submit_p99_ms']:.0f} ms; web CPU {c['web_cpu_ms_per_cycle']:.1f} ms a cycle; "
                f"{c['cores_busy']:.2f} cores busy"
            )
        report["stress"] = []
        for concurrency in [c for c in (4, 8, 16, 32) if c <= args.annotators]:
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
    claims = json.loads(
        manage("shell", "--no-imports", stdin=CLAIMS.format(threads=8, seconds=args.claim_seconds)).splitlines()[-1]
    )
    report["claiming"] = claims
    print(
        f"claim + submit in-process, {claims['threads']} threads: ours {claims['ours_per_s']:.1f}/s, "
        f"ORDER BY random() FOR UPDATE {claims['naive_per_s']:.1f}/s -> "
        + (f"{claims['ratio']:.1f}x" if claims["ratio"] else "no ratio (the study ran out of items)")
    )
    if not args.smoke:
        out = Path(args.out)
        out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"written to {out}")
    if not ok:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
