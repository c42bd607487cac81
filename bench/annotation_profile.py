"""Where the web server's CPU goes in one annotator cycle (GET next + POST judge), in-process:
Django's test client over the real middleware, sessions, CSRF (enforced) and PostgreSQL, warm,
under cProfile; printed as milliseconds of CPU per cycle by area (the issue's list: middleware,
session and user, the page's template, progress, claim, submit, Markdown) and as the top functions.

    .venv/bin/python bench/annotation_profile.py [--cycles 300] [--prompts 600]

    .venv/bin/python bench/annotation_profile.py --smoke   # 12 cycles, 60 prompts, nothing written (make test)

Writes bench/results/annotation-profile.json. Uses its own database (evalsite_profile, emptied
first) and its own redis-server (bench/private_redis.py); runs alone (its figures are CPU times)."""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DB = "evalsite_profile"
from bench import annotation, private_redis  # noqa: E402
from bench.annotation import SETUP, env  # noqa: E402

annotation.REDIS = private_redis.start()  # the profile's own Redis, never the machine's shared one
CACHE = f"{annotation.REDIS}/0"

# as bench/annotation.py deploys it (DEBUG off, sessions and the login limit in Redis), on our own
# database and Redis database, with the test client's host allowed
os.environ.update(
    {
        **env(),
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{DB}",
        "CACHE_URL": CACHE,
        "ALLOWED_HOSTS": "testserver,127.0.0.1",
        "DJANGO_SETTINGS_MODULE": "evalsite.settings",
    }
)

CSRF = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
ITEM = re.compile(r'action="/annotate/item/(\d+)/judge"')

# where a function's own time is counted: the first pattern its file or name matches
AREAS = [
    ("markdown / sanitising", ("markdown", "nh3", "safe_html")),
    ("template rendering", ("django/template", "templatetags")),
    ("claim and progress", ("annotation/claims.py:", "open_claim", "_claim", "_take_from_pool", "progress_for")),
    ("submit", ("annotation/answers.py:", "annotation/forms.py")),
    ("session and user", ("contrib/sessions", "contrib/auth", "core/sessions", "core/login")),
    ("CSRF", ("middleware/csrf",)),
    ("database driver and ORM", ("psycopg", "django/db")),
    ("cache", ("django/core/cache", "redis")),
    ("middleware and request handling", ("django/core/handlers", "django/middleware", "django/http", "django/urls")),
]


def recreate_database() -> None:
    for sql in (f"DROP DATABASE IF EXISTS {DB}", f"CREATE DATABASE {DB}"):
        subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", sql], check=True, timeout=60)


def cycle(client) -> None:
    page = client.get("/annotate/study/bench/next").content.decode()
    item, token = ITEM.search(page).group(1), CSRF.search(page).group(1)
    reply = client.post(f"/annotate/item/{item}/judge", {"choice": "a", "csrfmiddlewaretoken": token})
    assert reply.status_code == 302, reply.status_code


def count_queries(client) -> dict[str, int]:
    """SQL statements one GET next and one POST judge send (BEGIN and COMMIT included)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as seen:
        page = client.get("/annotate/study/bench/next").content.decode()
    counts = {"next": len(seen.captured_queries)}
    item, token = ITEM.search(page).group(1), CSRF.search(page).group(1)
    with CaptureQueriesContext(connection) as seen:
        client.post(f"/annotate/item/{item}/judge", {"choice": "a", "csrfmiddlewaretoken": token})
    counts["judge"] = len(seen.captured_queries)
    return counts


def area_of(key: tuple) -> str:
    filename, _, name = key
    where = f"{filename}:{name}"
    for area, patterns in AREAS:
        if any(p in where for p in patterns):
            return area
    return "other (Python, our views)"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cycles", type=int, default=300)
    parser.add_argument("--prompts", type=int, default=1500)
    parser.add_argument("--smoke", action="store_true", help="12 cycles, 60 prompts, nothing written")
    args = parser.parse_args()
    warm = 30
    if args.smoke:
        args.cycles, args.prompts, warm = 12, 60, 2
    recreate_database()
    import django

    django.setup()
    from django.core.management import call_command
    from django.test import Client

    call_command("migrate", verbosity=0)
    exec(SETUP.format(prompts=args.prompts, annotators=1, crowd=0, assignment="uniform", sampled=False), {})  # noqa: S102 (our own setup code)
    client = Client(enforce_csrf_checks=True)
    login = client.get("/accounts/login/").content.decode()
    reply = client.post(
        "/accounts/login/",
        {"username": "b000", "password": "bench-password", "csrfmiddlewaretoken": CSRF.search(login).group(1)},
    )
    assert reply.status_code == 302, "login"
    for _ in range(warm):  # warm: templates compiled, connections open, caches filled
        cycle(client)
    from django.test import override_settings

    # the claim (with the page's texts and the progress count) and the answer in one statement each
    # against the portable path every database takes (the ORM's statements), alternated in rounds
    cpu_ms: dict[bool, list[float]] = {True: [], False: []}
    wall: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(4):
        for one in (True, False):
            with override_settings(SUBMIT_IN_ONE_STATEMENT=one, CLAIM_IN_ONE_STATEMENT=one):
                started, cpu = time.perf_counter(), time.process_time()
                for _ in range(args.cycles // 4):
                    cycle(client)
                cpu_ms[one].append((time.process_time() - cpu) * 1000 / (args.cycles // 4))
                wall[one].append((time.perf_counter() - started) * 1000 / (args.cycles // 4))
    plain_ms = sum(cpu_ms[True]) / len(cpu_ms[True])
    portable_ms = sum(cpu_ms[False]) / len(cpu_ms[False])
    wall_ms = sum(wall[True]) / len(wall[True])
    profile = cProfile.Profile(time.process_time)  # CPU, not time spent waiting for PostgreSQL
    queries = count_queries(client)  # with the settings' default: one statement on PostgreSQL
    profile.enable()
    for _ in range(args.cycles):
        cycle(client)
    profile.disable()
    stats = pstats.Stats(profile)
    total = sum(v[2] for v in stats.stats.values())  # own time of every function
    areas: dict[str, float] = {}
    for key, (_, _, own, _, _) in stats.stats.items():
        areas[area_of(key)] = areas.get(area_of(key), 0.0) + own
    share = {k: v / total for k, v in sorted(areas.items(), key=lambda kv: -kv[1])}
    top = sorted(stats.stats.items(), key=lambda kv: -kv[1][3])[:25]
    own = sorted(stats.stats.items(), key=lambda kv: -kv[1][2])[:25]
    results = {
        "cycles": args.cycles,
        "cpu_ms_per_cycle_in_process": round(plain_ms, 2),
        "cpu_ms_per_cycle_portable": round(portable_ms, 2),
        "one_statement_over_portable": round(plain_ms / portable_ms, 3),
        "wall_ms_per_cycle_in_process": round(wall_ms, 2),
        "note": "test client + server in one process, no HTTP parsing or gunicorn; the load generator is not counted",
        "queries": queries,
        "areas_ms_per_cycle": {k: round(v * plain_ms, 2) for k, v in share.items()},
        "top_cumulative_profiled": [
            {"function": f"{Path(k[0]).name}:{k[1]}:{k[2]}", "ms_per_cycle": round(v[3] * 1000 / args.cycles, 2)}
            for k, v in top
        ],
        "top_own_profiled": [
            {"function": f"{Path(k[0]).name}:{k[1]}:{k[2]}", "ms_per_cycle": round(v[2] * 1000 / args.cycles, 3)}
            for k, v in own
        ],
        "load_1min": os.getloadavg()[0],
    }
    out = ROOT / "bench" / "results" / "annotation-profile.json"
    if not args.smoke:
        out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"CPU per next + submit, in process: {plain_ms:.2f} ms (wall {wall_ms:.2f} ms) over {args.cycles} cycles")
    print(f"SQL statements: next {queries['next']}, judge {queries['judge']}")
    print(
        f"claim and answer in one statement each / the portable path: {plain_ms:.2f} / {portable_ms:.2f} ms = "
        f"{plain_ms / portable_ms:.2f} (alternated, 4 rounds each)"
    )
    for area, ms in results["areas_ms_per_cycle"].items():
        print(f"  {area:<34} {ms:6.2f} ms")
    print("top cumulative (CPU under cProfile, which slows each call several times):")
    for row in results["top_cumulative_profiled"]:
        print(f"  {row['ms_per_cycle']:7.2f} ms  {row['function']}")
    print("top own time (under cProfile):")
    for row in results["top_own_profiled"]:
        print(f"  {row['ms_per_cycle']:7.3f} ms  {row['function']}")
    if not args.smoke:
        print(f"written to {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
