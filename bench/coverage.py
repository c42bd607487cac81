"""Coverage through the product's own path: simulated people with a known truth (bench/world.py)
vote on PostgreSQL through the claim and submit the annotator's page calls
(annotation.claims.claim_next, annotation.answers.submit), a judge job's verdicts are recorded as the
runner records them (evalsite.judging.runner.record), the periodic task (dashboard.check_targets)
stops each study at its target, and the final Figure 1 is read as the page reads it
(evalsite.dashboard.figures.build): does its 95% interval, and the judge-assisted one, hold the
truth, and how far off is the estimate?

The prompt file is grouped by source (its first ``grouped`` prompts from a source where the
candidate wins 15 points more), so a study filled in file order would be biased; three kinds of
study: uniform (overlap 2: a comparison counts once both votes are in, a split is a tie), adaptive and sampled
(`study sample`, rate 0.5), each with a realistic judge (one verdict per order, position bias,
about 70% agreement with a person). Each kind's study is made and judged once; every run starts it
afresh with a new random order (bench scaffolding: the product never takes votes back).

The drill tests/drills/test_coverage_through_the_product.py runs ``run`` for about two minutes of
the suite; this script runs many more studies in a database of its own (evalsite_coverage,
recreated):

    .venv/bin/python bench/coverage.py [--studies 120] [--smoke]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.world import TIE, WIN, World, make_world  # noqa: E402

KINDS = {
    # kind: (overlap, assignment, sampled at)
    "uniform": (2, "uniform", None),
    "adaptive": (1, "adaptive", None),
    "sampled": (1, "adaptive", 0.5),
}
SHARES = np.array([[0.44, 0.21, 0.35], [0.24, 0.22, 0.54]])  # DaVinci003 and Claude in Figure 1
JUDGE = {"noise": 0.3, "position": 0.5}  # about 70% agreement with a person (bench/evidence.py)


@dataclass
class Outcome:
    kind: str
    baseline: str
    truth: float
    people: float
    people_ci: tuple[float, float]
    assisted: float | None
    assisted_ci: tuple[float, float] | None
    stopped: bool
    votes: int
    complete: int

    def covered(self, which: str) -> bool | None:
        ci = self.people_ci if which == "people" else self.assisted_ci
        return None if ci is None else bool(ci[0] <= self.truth <= ci[1])


@dataclass
class Setup:
    world: World
    prompt_set: object
    candidate: object
    baselines: list
    users: list
    calls: dict = field(default_factory=dict)  # (baseline index, prompt index, order) -> JudgeCall


def prepare(rng: np.random.Generator, items: int, grouped: int, annotators: int = 4) -> Setup:
    """The prompt file (grouped by source), the systems and their responses, the annotators, and
    the judge's verdicts on every comparison (a judge at temperature 0 says the same each time,
    so its calls are made once and every study's job takes them from the cache)."""
    from django.contrib.auth.models import User
    from django.utils import timezone

    from evalsite.catalog.models import Prompt, PromptSet, Response, System
    from evalsite.core.accounts import annotators_group
    from evalsite.judging.models import JudgeCall

    world = make_world(rng, items, shares=SHARES, grouped=grouped, **JUDGE)
    prompt_set = PromptSet.objects.create(name="coverage")
    prompts = Prompt.objects.bulk_create(
        Prompt(
            prompt_set=prompt_set,
            external_id=f"p{i:04d}",
            source="askreddit" if i < grouped else "authors",
            messages=[{"role": "user", "content": f"Question {i}?"}],
        )
        for i in range(items)
    )
    candidate = System.objects.create(name="candidate", kind="candidate", backend="imported")
    baselines = [System.objects.create(name=f"baseline-{b}", backend="imported") for b in range(len(SHARES))]
    Response.objects.bulk_create(
        Response(system=system, prompt=p, text=f"{system.name} answers {p.external_id}.", html="<p>answer</p>")
        for system in (candidate, *baselines)
        for p in prompts
    )
    group = annotators_group()
    users = []
    for k in range(annotators):
        user = User.objects.create_user(f"person{k}", password=None)
        user.groups.add(group)
        users.append(user)
    setup = Setup(world, prompt_set, candidate, baselines, users)
    verdict_of = {0: ("first", "second"), 2: ("second", "first")}  # candidate, baseline: per order
    now = timezone.now()
    for b in range(len(baselines)):
        first, second, _ = world.judge(rng, b)
        for i in range(items):
            for order, said in (("cand_first", first[i]), ("base_first", second[i])):
                position = "tie" if said == TIE else verdict_of[int(said)][0 if order == "cand_first" else 1]
                setup.calls[(b, i, order)] = JudgeCall(
                    key=f"coverage-{b}-{i}-{order}",
                    model="simulated-judge",
                    template="lima",
                    template_hash="x",
                    reserved_at=now,
                    status=JudgeCall.Status.DONE,
                    verdict=position,
                    raw_output=position,
                )
    JudgeCall.objects.bulk_create(setup.calls.values())
    setup.calls = {key: JudgeCall.objects.get(key=call.key) for key, call in setup.calls.items()}
    return setup


@dataclass
class Rig:
    """One study of a kind, its comparisons mapped to the world's, and its judge job: recorded once
    through the runner's path (the judge says the same each time); each run then starts the study
    afresh (see fresh)."""

    kind: str
    study: object
    job: object
    where: dict  # comparison id -> (baseline index, prompt index)


def rig(setup: Setup, kind: str) -> Rig:
    from evalsite.annotation import studies
    from evalsite.annotation.models import Comparison
    from evalsite.judging.models import JudgeConfig, JudgeJob
    from evalsite.judging.runner import record

    overlap, assignment, _ = KINDS[kind]
    study = studies.create_study(
        f"coverage-{kind}",
        setup.candidate,
        setup.baselines,
        setup.prompt_set,
        overlap=overlap,
        gold_rate=0.0,
        assignment=assignment,
    )
    study.annotators.set(setup.users)
    studies.start_study(study)
    config, _ = JudgeConfig.objects.get_or_create(
        name="simulated-judge", defaults={"model": "simulated-judge", "base_url": "http://127.0.0.1:9/v1"}
    )
    job = JudgeJob.objects.create(study=study, config=config, status="running")
    index_of = {s.pk: b for b, s in enumerate(setup.baselines)}
    prompt_index = {pk: int(ext[1:]) for pk, ext in setup.prompt_set.prompts.values_list("pk", "external_id")}
    comparisons = list(Comparison.objects.filter(study=study).select_related("candidate_response", "baseline_response"))
    where = {c.pk: (index_of[c.baseline_id], prompt_index[c.prompt_id]) for c in comparisons}
    for comparison in comparisons:
        b, i = where[comparison.pk]
        for order in ("cand_first", "base_first"):
            record(job, comparison, order, setup.calls[(b, i, order)])
    JudgeJob.objects.filter(pk=job.pk).update(status="done")
    job.refresh_from_db()
    return Rig(kind, study, job, where)


def fresh(r: Rig, seed: int) -> None:
    """The study as if just started, with a new random order: its votes and claims gone, counters
    at zero, no stop, no sampling plan, no judge fixed (test scaffolding, not a product path: the
    product never takes votes back)."""
    from django.core.cache import caches
    from django.db import connection

    from evalsite.annotation import studies
    from evalsite.annotation.models import Assignment, Comparison, HumanJudgment, Study

    HumanJudgment.objects.filter(comparison__study=r.study).delete()
    Assignment.objects.filter(comparison__study=r.study).delete()
    rows = Comparison.objects.filter(study=r.study, is_gold=False)
    rows.update(
        slots_taken=0, judgments_done=0, votes_candidate=0, votes_baseline=0, votes_tie=0,
        completed_at=None, sampling_probability=None, people_wanted=True,
    )
    comparisons = list(rows.only("pk"))
    studies.draw_order(comparisons, random.Random(seed))
    values = ", ".join(f"({c.pk}, {c.draw_order})" for c in comparisons)
    with connection.cursor() as cursor:
        table = Comparison._meta.db_table
        cursor.execute(f"UPDATE {table} c SET draw_order = v.o FROM (VALUES {values}) v(id, o) WHERE c.id = v.id")
    Study.objects.filter(pk=r.study.pk).update(
        enough_at=None, sampling_rate=None, target_judge_job=None, assignment=KINDS[r.kind][1]
    )
    r.study.refresh_from_db()
    caches["process"].clear()  # the claim's order floor and widest baseline, per process


def one_study(setup: Setup, r: Rig, rng: np.random.Generator, target: float, check_every: int) -> list[Outcome]:
    """The rig's study from a fresh start to its stop, through the product's path; its outcomes."""
    from django.core.management import call_command

    from evalsite.annotation import answers, claims
    from evalsite.annotation.models import Comparison
    from evalsite.dashboard import figures
    from evalsite.dashboard.stopping import set_target
    from evalsite.dashboard.tasks import check_targets

    overlap, _, rate = KINDS[r.kind]
    fresh(r, int(rng.integers(1 << 30)))
    study = r.study
    if rate is not None:
        seed = str(int(rng.integers(1 << 30)))
        with open(os.devnull, "w") as quiet:
            call_command("study", "sample", study.name, "--rate", str(rate), "--judge", str(r.job.pk), "--seed", seed,
                         stdout=quiet)
        study.refresh_from_db()
    set_target(study, target)
    votes = idle = 0
    users = setup.users
    while idle < len(users):
        user = users[(votes + idle) % len(users)]
        study.refresh_from_db(fields=["enough_at", "status"])
        claim = claims.claim_next(study, user, member_checked=True)
        if claim is None:
            idle += 1
            continue
        idle = 0
        b, i = r.where[claim.comparison_id]
        said = int(setup.world.votes(rng, b, i)[0, 0])
        choice = "tie" if said == TIE else ("a" if (said == WIN) == claim.candidate_on_left else "b")
        answers.submit(claim.pk, user, choice)
        votes += 1
        if votes % check_every == 0:
            check_targets()
    check_targets()
    study.refresh_from_db()
    built = figures.build(study, job=r.job)
    truth = setup.world.truth(overlap)[:, WIN]
    complete = Comparison.objects.filter(study=study, completed_at__isnull=False).count()
    out = []
    for row in built.result["human"]:
        b = int(row["baseline"].split("-")[1])
        assisted = row.get("assisted")
        out.append(
            Outcome(
                r.kind,
                row["baseline"],
                float(truth[b]),
                float(row["win"]),
                tuple(row["win_ci"]),
                None if assisted is None else float(assisted["win"]),
                None if assisted is None else tuple(assisted["win_ci"]),
                study.enough_at is not None,
                votes,
                complete,
            )
        )
    return out


def run(
    studies_per_kind: int,
    seed: int,
    items: int = 160,
    grouped: int = 40,
    target: float = 0.15,
    check_every: int = 10,
    kinds=tuple(KINDS),
    deadline: float | None = None,
) -> list[Outcome]:
    """Studies of each kind in turn (uniform, adaptive, sampled, uniform, ...) until
    ``studies_per_kind`` of each or the ``deadline`` (time.monotonic()) passes."""
    rng = np.random.default_rng(seed)
    setup = prepare(rng, items, grouped)
    rigs = [rig(setup, kind) for kind in kinds]
    outcomes: list[Outcome] = []
    for _ in range(studies_per_kind):
        for r in rigs:
            if deadline is not None and time.monotonic() > deadline:
                return outcomes
            outcomes += one_study(setup, r, rng, target, check_every)
    return outcomes


def summary(outcomes: list[Outcome]) -> dict:
    """Per kind and overall: coverage of the people's and the judge-assisted intervals, the bias and
    the mean absolute error of each (points), how often the study stopped at its target, votes."""
    out = {}
    for kind in sorted({o.kind for o in outcomes}) + ["all"]:
        rows = [o for o in outcomes if kind in ("all", o.kind)]
        people = [o.covered("people") for o in rows]
        assisted = [o.covered("assisted") for o in rows if o.assisted_ci is not None]
        out[kind] = {
            "intervals": len(rows),
            "coverage_people": float(np.mean(people)),
            "coverage_assisted": float(np.mean(assisted)) if assisted else None,
            "bias_points_people": float(np.mean([o.people - o.truth for o in rows]) * 100),
            "bias_points_assisted": (
                float(np.mean([o.assisted - o.truth for o in rows if o.assisted is not None]) * 100)
                if assisted
                else None
            ),
            "error_sd_points_people": float(np.std([o.people - o.truth for o in rows]) * 100),
            "stopped_at_target": float(np.mean([o.stopped for o in rows])),
            "votes_per_study": float(np.mean([o.votes for o in rows])),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--studies", type=int, default=120, help="studies of each kind")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    db = "evalsite_coverage"
    os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{db}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "evalsite.settings")
    os.environ["LOG_LEVEL"] = "WARNING"
    os.environ["ADAPTIVE_REFRESH_SECONDS"] = "0"
    for sql in (f"DROP DATABASE IF EXISTS {db}", f"CREATE DATABASE {db}"):
        subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", sql], check=True, timeout=120)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    started, load = time.monotonic(), os.getloadavg()[0]
    outcomes = run(1 if args.smoke else args.studies, args.seed)
    results = {
        "studies_per_kind": 1 if args.smoke else args.studies,
        "seed": args.seed,
        "summary": summary(outcomes),
        "seconds": round(time.monotonic() - started, 1),
        "load_1min_before": load,
        "load_1min_after": os.getloadavg()[0],
    }
    print(json.dumps(results, indent=1))
    if not args.smoke:
        out = ROOT / "bench" / "results" / "coverage.json"
        out.write_text(json.dumps(results, indent=2) + "\n")
        print(f"written to {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
