"""Dashboard at scale: PostgreSQL filled with 1M human judgments and 1M judge verdicts; the
study's dashboard page is timed (aggregation in the database) against the same numbers computed
by a Python loop over the rows.

    .venv/bin/python bench/dashboard.py [--prompts 100000]
    .venv/bin/python bench/dashboard.py --smoke      # 200 prompts, seconds: that it still runs (make test)

100,000 prompts x 5 baselines = 500,000 comparisons, each judged by 2 annotators (1M judgments)
and by the judge in both orders (1M verdicts). Uses the database evalsite_dash (recreated)."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SMOKE = "--smoke" in sys.argv
DB = "evalsite_dash_smoke" if SMOKE else "evalsite_dash"
sys.path.insert(0, str(ROOT))
os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{DB}"
os.environ["ALLOWED_HOSTS"] = "testserver"
os.environ["LOG_LEVEL"] = "WARNING"
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "evalsite.settings")

# Figure 1's shares (LIMA wins, tie) per baseline, used to draw the synthetic votes
TRUTH = [(0.53, 0.21), (0.44, 0.21), (0.33, 0.25), (0.24, 0.22), (0.18, 0.25)]


def psql(sql: str) -> None:
    subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", sql], check=True, timeout=120)


def fill(prompts: int) -> dict:
    import django

    django.setup()
    from django.contrib.auth.hashers import make_password
    from django.contrib.auth.models import User
    from django.db import connection

    from evalsite.annotation.models import Study
    from evalsite.catalog.models import PromptSet, System
    from evalsite.judging.models import JudgeConfig, JudgeJob

    prompt_set = PromptSet.objects.create(name="bench")
    cand = System.objects.create(name="lima", kind="candidate", backend="imported")
    bases = [
        System.objects.create(name=n, backend="imported")
        for n in ("alpaca-65b", "davinci-003", "bard", "claude", "gpt-4")
    ]
    hashed = make_password("x")
    users = User.objects.bulk_create([User(username=f"u{i:03d}", password=hashed) for i in range(100)])
    User.objects.create_superuser("chief", "", "chief-password")
    study = Study.objects.create(name="bench", candidate=cand, prompt_set=prompt_set, overlap=2, status="open")
    study.baselines.set(bases)
    config = JudgeConfig.objects.create(
        name="gpt-4", model="gpt-4", price_input_per_1k="0.03", price_output_per_1k="0.06"
    )
    job = JudgeJob.objects.create(study=study, config=config, status="done")
    user_ids = [u.pk for u in users]
    base_ids = [b.pk for b in bases]
    truth_case = " ".join(f"WHEN {b} THEN {w}" for b, (w, _) in zip(base_ids, TRUTH, strict=True))
    tie_case = " ".join(f"WHEN {b} THEN {t}" for b, (_, t) in zip(base_ids, TRUTH, strict=True))
    steps = [
        (
            "prompts",
            f"""INSERT INTO catalog_prompt (external_id, messages, source, tags, reference_answer, created_at, prompt_set_id,
                                            follow_ups)
            SELECT 'p' || g, '[{{"role": "user", "content": "question"}}]'::jsonb,
                   CASE WHEN g % 4 = 0 THEN 'askreddit' ELSE 'authors' END, '[]'::jsonb, '', now(), {prompt_set.pk},
                   '[]'::jsonb
            FROM generate_series(1, {prompts}) g""",
        ),
        (
            "responses",
            # rendered, as a study renders its answers when it opens: the HTML and the style counted in it
            """INSERT INTO catalog_response (sample_index, text, finish_reason, error, notes, metadata, created_at,
                                                  prompt_id, system_id, turns, html, style_length, style_headers,
                                                  style_lists, style_bold)
            SELECT 0, x.text, 'stop', '', '', '{}'::jsonb, now(), x.prompt_id, x.system_id, '[]'::jsonb,
                   '<p>' || x.text || '</p>', LENGTH(x.text) / 4, 0, 0, 0
            FROM (SELECT repeat('x', (50 + ((p.id * 7 + s.id * 131) % 900))::int) AS text, p.id AS prompt_id,
                         s.id AS system_id
                  FROM catalog_prompt p CROSS JOIN catalog_system s) x""",
        ),
        (
            "comparisons",
            f"""INSERT INTO annotation_comparison (is_gold, gold_better, slots_taken, judgments_done, baseline_id,
                                                          baseline_response_id, candidate_response_id, prompt_id, study_id,
                                                          votes_candidate, votes_baseline, votes_tie, people_wanted,
                                                          draw_order, completed_at)
            SELECT false, '', 2, 2, rb.system_id, rb.id, rc.id, rc.prompt_id, {study.pk}, 0, 0, 0, true,
                   row_number() OVER (ORDER BY md5(rc.id || '-' || rb.id)), now()
            FROM catalog_response rc JOIN catalog_response rb ON rb.prompt_id = rc.prompt_id AND rb.system_id <> rc.system_id
            WHERE rc.system_id = {cand.pk}""",
        ),
        (
            "assignments",
            f"""INSERT INTO annotation_assignment (candidate_on_left, status, flag, claimed_at, expires_at,
                                                          shown_at, finished_at, annotator_id, comparison_id, study_id)
            SELECT random() < 0.5, 'done', '', now(), now(), now(), now(),
                   (ARRAY{user_ids})[1 + ((c.id * 2 + k) % 100)], c.id, c.study_id
            FROM annotation_comparison c CROSS JOIN generate_series(0, 1) k""",
        ),
        (
            "human judgments",
            f"""INSERT INTO annotation_humanjudgment (outcome, picked_side, reason, seconds, created_at,
                                                                annotator_id, assignment_id, comparison_id)
            SELECT CASE WHEN r < w THEN 'candidate' WHEN r < w + t THEN 'tie' ELSE 'baseline' END,
                   CASE WHEN r < w + t AND r >= w THEN 'none' WHEN r < 0.5 THEN 'left' ELSE 'right' END,
                   '', 20 + 40 * random(), now(), a.annotator_id, a.id, a.comparison_id
            FROM (SELECT a.*, random() AS r, CASE c.baseline_id {truth_case} END AS w, CASE c.baseline_id {tie_case} END AS t
                  FROM annotation_assignment a JOIN annotation_comparison c ON c.id = a.comparison_id) a""",
        ),
        (
            "vote counters",
            """UPDATE annotation_comparison c SET votes_candidate = v.cand, votes_baseline = v.base, votes_tie = v.tie
            FROM (SELECT comparison_id, SUM(CASE WHEN outcome = 'candidate' THEN 1 ELSE 0 END) AS cand,
                         SUM(CASE WHEN outcome = 'baseline' THEN 1 ELSE 0 END) AS base,
                         SUM(CASE WHEN outcome = 'tie' THEN 1 ELSE 0 END) AS tie
                  FROM annotation_humanjudgment GROUP BY comparison_id) v
            WHERE v.comparison_id = c.id""",
        ),
        (
            "judge calls",
            """INSERT INTO judging_judgecall (key, model, template, template_hash, status, reserved_at, reserved_by,
                                                     raw_output, retry_output, verdict, parse_error, error, input_tokens,
                                                     output_tokens, cost, created_at, requests)
            SELECT md5(c.id || '-' || o), 'gpt-4', 'lima', 'x', 'done', now(), '', 'Answer A is significantly better.', '',
                   CASE WHEN random() < 0.55 THEN 'first' WHEN random() < 0.7 THEN 'second' ELSE 'tie' END, '', '', 600, 9,
                   0.01854, now(), 1
            FROM annotation_comparison c CROSS JOIN generate_series(0, 1) o""",
        ),
        (
            "judge verdicts",
            f"""INSERT INTO judging_judgeverdict ("order", outcome, call_id, comparison_id, job_id)
            SELECT CASE o WHEN 0 THEN 'cand_first' ELSE 'base_first' END,
                   CASE WHEN jc.verdict = 'tie' THEN 'tie'
                        WHEN (jc.verdict = 'first') = (o = 0) THEN 'candidate' ELSE 'baseline' END,
                   jc.id, c.id, {job.pk}
            FROM annotation_comparison c CROSS JOIN generate_series(0, 1) o
            JOIN judging_judgecall jc ON jc.key = md5(c.id || '-' || o)""",
        ),
        (
            "judge outcomes",
            f"""INSERT INTO judging_judgeoutcome (job_id, comparison_id, baseline_id, length_bin, cand_first, base_first,
                                                  cand_first_verdict, base_first_verdict, outcome, dropped)
            SELECT {job.pk}, c.id, c.baseline_id,
                   CASE WHEN d <= -500 THEN 0 WHEN d <= -100 THEN 1 WHEN d <= 100 THEN 2 WHEN d <= 500 THEN 3 ELSE 4 END,
                   vf.outcome, vb.outcome, cf.verdict, cb.verdict,
                   CASE WHEN vf.outcome = vb.outcome THEN vf.outcome ELSE 'tie' END, ''
            FROM (SELECT c.*, LENGTH(rc.text) - LENGTH(rb.text) AS d FROM annotation_comparison c
                  JOIN catalog_response rc ON rc.id = c.candidate_response_id
                  JOIN catalog_response rb ON rb.id = c.baseline_response_id) c
            JOIN judging_judgeverdict vf ON vf.comparison_id = c.id AND vf."order" = 'cand_first' AND vf.job_id = {job.pk}
            JOIN judging_judgeverdict vb ON vb.comparison_id = c.id AND vb."order" = 'base_first' AND vb.job_id = {job.pk}
            JOIN judging_judgecall cf ON cf.id = vf.call_id JOIN judging_judgecall cb ON cb.id = vb.call_id""",
        ),
        (
            "job totals",
            f"UPDATE judging_judgejob SET tokens_in = 600 * 2 * {prompts} * 5, tokens_out = 9 * 2 * {prompts} * 5 WHERE id = {job.pk}",
        ),
    ]
    timings = {}
    with connection.cursor() as cursor:
        for name, sql in steps:
            started = time.monotonic()
            cursor.execute(sql)
            timings[name] = (cursor.rowcount, time.monotonic() - started)
            print(f"  {name}: {cursor.rowcount:,} rows in {timings[name][1]:.1f} s", flush=True)
        cursor.execute("ANALYZE")
    return {"study": study, "job": job, "timings": timings}


def python_loop(study, job) -> dict:
    """The naive way: every row into Python, then the same numbers."""
    from django.db import connection

    from stats.outcomes import combine_orders, tie_discounted_from_patterns, win_tie_loss

    votes: dict[int, list] = defaultdict(lambda: [None, 0, 0, 0])
    with connection.cursor() as cursor:
        cursor.execute(
            """SELECT j.comparison_id, s.name, j.outcome FROM annotation_humanjudgment j
                          JOIN annotation_comparison c ON c.id = j.comparison_id JOIN catalog_system s ON s.id = c.baseline_id
                          WHERE c.study_id = %s""",
            [study.pk],
        )
        for comparison_id, baseline, outcome in cursor:
            row = votes[comparison_id]
            row[0] = baseline
            row[{"candidate": 1, "baseline": 2, "tie": 3}[outcome]] += 1
        patterns: dict[str, Counter] = defaultdict(Counter)
        for baseline, c, b, t in votes.values():
            patterns[baseline][(c, b, t)] += 1
        human = {name: win_tie_loss(p) for name, p in patterns.items()}
        merged: Counter = Counter()
        for p in patterns.values():
            merged.update(p)
        agreement = tie_discounted_from_patterns(merged)
        orders: dict[int, dict] = defaultdict(dict)
        position: Counter = Counter()
        cursor.execute(
            """SELECT v.comparison_id, s.name, v."order", v.outcome, jc.verdict FROM judging_judgeverdict v
                          JOIN judging_judgecall jc ON jc.id = v.call_id JOIN annotation_comparison c ON c.id = v.comparison_id
                          JOIN catalog_system s ON s.id = c.baseline_id WHERE v.job_id = %s""",
            [job.pk],
        )
        for comparison_id, baseline, order, outcome, verdict in cursor:
            orders[comparison_id][order] = outcome
            orders[comparison_id]["baseline"] = baseline
            position[verdict] += 1
        judge: dict[str, Counter] = defaultdict(Counter)
        for o in orders.values():
            combined = combine_orders(o.get("cand_first", ""), o.get("base_first", ""), job.policy)
            if combined:
                judge[o["baseline"]][{"candidate": (1, 0, 0), "baseline": (0, 1, 0), "tie": (0, 0, 1)}[combined]] += 1
        judge_shares = {name: win_tie_loss(p) for name, p in judge.items()}
    return {"human": human, "agreement": agreement, "judge": judge_shares, "position": position}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--reuse", action="store_true", help="time the database filled by an earlier run")
    parser.add_argument("--smoke", action="store_true", help="200 prompts, one run, nothing written: that it runs")
    args = parser.parse_args()
    if args.smoke:
        args.prompts, args.repeat = 200, 1
    if args.reuse:  # brought to today's schema first (a column added since has its database default)
        subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, check=True, env=os.environ)
        import django

        django.setup()
        from django.db import connection

        from evalsite.annotation.models import Study
        from evalsite.judging.models import JudgeJob

        study, job = Study.objects.get(name="bench"), JudgeJob.objects.get(study__name="bench")
        with connection.cursor() as cursor:
            counts = {}
            for key, table in (
                ("comparisons", "annotation_comparison"),
                ("human judgments", "annotation_humanjudgment"),
                ("judge verdicts", "judging_judgeverdict"),
            ):
                cursor.execute(f"SELECT COUNT(*) FROM {table}")
                counts[key] = (cursor.fetchone()[0], 0.0)
        filled = {"timings": counts}
    else:
        psql(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
        psql(f"CREATE DATABASE {DB}")
        subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, check=True, env=os.environ)
        print("filling PostgreSQL:", flush=True)
        filled = fill(args.prompts)
        study, job = filled["study"], filled["job"]

    from django.test import Client

    from evalsite.dashboard.data import dashboard

    client = Client()
    client.login(username="chief", password="chief-password")
    url = f"/dashboard/{study.name}/?job={job.pk}"
    from django.db import transaction

    assert client.get(url).status_code == 200  # warm-up: the first request's imports and caches are timed in neither
    load_before = os.getloadavg()[0]
    page_times, one_connection_times = [], []
    for _ in range(args.repeat):  # alternating: the page as served, then its reads one after another
        started = time.monotonic()
        reply = client.get(url)
        page_times.append(time.monotonic() - started)
        assert reply.status_code == 200
        # inside a transaction the page reads on its one connection, one query after another
        # (evalsite/core/side_by_side.py): what every read cost before they went side by side
        with transaction.atomic():
            started = time.monotonic()
            assert client.get(url).status_code == 200
            one_connection_times.append(time.monotonic() - started)
    panel_times = []
    for _ in range(args.repeat):
        started = time.monotonic()
        assert client.get(url + "&panel=agreement").status_code == 200
        panel_times.append(time.monotonic() - started)
    evidence_times = []  # the page's other second request: blinding, calibration, length and style control
    for _ in range(args.repeat):
        started = time.monotonic()
        assert client.get(url + "&panel=evidence").status_code == 200
        evidence_times.append(time.monotonic() - started)
    loop_times = []
    for _ in range(args.repeat):
        started = time.monotonic()
        loop = python_loop(study, job)
        loop_times.append(time.monotonic() - started)
    # the same numbers both ways
    ours = {r["baseline"]: r for r in dashboard(study, "majority", job)["human"]}
    for name, shares in loop["human"].items():
        assert abs(ours[name]["win"] - shares.win) < 1e-9 and ours[name]["n"] == shares.n, name
    page, naive = statistics.median(page_times), statistics.median(loop_times)
    report = {
        "human_judgments": filled["timings"]["human judgments"][0],
        "judge_verdicts": filled["timings"]["judge verdicts"][0],
        "comparisons": filled["timings"]["comparisons"][0],
        "page_s": page,
        "page_runs": page_times,
        "page_one_connection_s": statistics.median(one_connection_times),
        "page_one_connection_runs": one_connection_times,
        "side_by_side_speedup": statistics.median(one_connection_times) / page,
        "python_loop_s": naive,
        "loop_runs": loop_times,
        "ratio": naive / page,
        "agreement_panel_s": statistics.median(panel_times),
        "panel_runs": panel_times,
        "evidence_panel_s": statistics.median(evidence_times),
        "evidence_panel_runs": evidence_times,
        "load_1min_before": load_before,
        "load_1min_after": os.getloadavg()[0],
    }
    print(
        f"{report['human_judgments']:,} human judgments and {report['judge_verdicts']:,} judge verdicts on "
        f"{report['comparisons']:,} comparisons"
    )
    print(
        f"dashboard page (database aggregation): median {page * 1000:.0f} ms of {args.repeat}; "
        f"Python loop over the rows, same numbers: median {naive:.1f} s -> the page {naive / page:.2f}x the loop's speed"
    )
    print(
        f"the same page with its reads one after another on one connection: median "
        f"{report['page_one_connection_s'] * 1000:.0f} ms (side by side: {report['side_by_side_speedup']:.2f}x its speed)"
    )
    print(
        f"its second request, per-annotator and person-judge agreement (scans every judgment): "
        f"median {report['agreement_panel_s'] * 1000:.0f} ms"
    )
    print(
        f"its other second request, blinding checks, calibration and length and style control (reads every "
        f"answer's style): median {report['evidence_panel_s'] * 1000:.0f} ms"
    )
    if args.smoke:
        psql(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
        return
    out = ROOT / "bench" / "results" / "dashboard.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
