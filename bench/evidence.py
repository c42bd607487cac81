"""The numbers the study page shows, on simulated studies with a known truth (bench/world.py),
through the same functions the product calls (stats/evidence.py, stats/outcomes.py,
stats/intervals.py). The judge is realistic (one verdict per order at temperature 0, a bias for
the answer shown first and for the longer one, 60-80% agreement with a person); the oracle judge
(each comparison's true people's distribution) is reported beside it, labelled, as the best case.

Measured, in one run (figures in bench/results/evidence.json):

1. coverage at every look: for studies of n = 20, 50 and 300 comparisons, how often the truth ever
   leaves the anytime-valid interval when it is looked at after every complete comparison
   ("ever-miss", allowed 5%), uniform (people alone and judge-assisted) and sampled (`study
   sample`, rate 0.5: Horvitz-Thompson and active inference), the betting sequence beside the
   asymptotic one the product used before;
2. coverage of the one-look intervals at n = 10, 20, 30, 100 comparisons and win shares 0.02 to 0.98
   (goal >= 0.93 everywhere): Figure 1 by majority (exact), every vote counting (three per prompt,
   Korn-Graubard), and the judge-assisted bar (PPI++ at its effective sample size);
3. people's votes until every baseline is known to +-5 points with the betting sequence against the
   asymptotic one, on the same studies (3 baselines, 1,000 comparisons each, looked at every 10);
4. what the judge is worth: the judge-assisted interval's width over the people-only one at 200
   votes per baseline, and the votes to +-5 points with the judge (uniform, and a sampled study at
   rate 0.5) over people alone, for the realistic judges and the oracle;
5. length control: the judge's win rate against the people's, as counted and length-controlled,
   with people who have no taste for length and with people who like longer answers too.

    .venv/bin/python bench/evidence.py [--reps 400] [--smoke]

--smoke runs every part on a few repetitions (seconds), for `make test`."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.world import FIGURE_1, TIE, WIN, agreement, make_world  # noqa: E402
from stats.evidence import (  # noqa: E402
    assisted_terms,
    classical_mean,
    cs_planned_n,
    judge_assisted_mean,
    length_controlled_win_rate,
    sampled_sequence_terms,
    sampling_probabilities,
)
from stats.intervals import betting_cs  # noqa: E402
from stats.outcomes import win_tie_loss  # noqa: E402

# judges by their agreement with one person (greedy: temperature 0); calibrated on bench/world.py
JUDGES = {
    "realistic-80": {"noise": 0.0, "position": 0.2},
    "realistic-70": {"noise": 0.3, "position": 0.5},
    "realistic-60": {"noise": 0.45, "position": 0.4},
    "oracle (best case)": {"noise": 0.0, "position": 0.0, "oracle": True},
}
HEADLINE = "realistic-70"


# -- the asymptotic sequence used before (kept here only to compare) --------------------------------


def asymptotic_rho(planned_n: int, alpha: float = 0.05, variance: float = 0.25) -> float:
    log_term = -2 * math.log(alpha) + math.log(-2 * math.log(alpha) + 1)
    return math.sqrt(log_term / (max(planned_n, 1) * variance))


def asymptotic_half_width(n: np.ndarray, sd: np.ndarray, rho: float, alpha: float = 0.05) -> np.ndarray:
    """Waudby-Smith et al.'s asymptotic confidence sequence (Annals of Statistics 2024, Thm 2.2),
    as the product computed it before: valid only as n grows."""
    v = n * sd**2 * rho**2 + 1
    with np.errstate(divide="ignore", invalid="ignore"):
        half = np.sqrt(2 * v / (n**2 * rho**2) * np.log(np.sqrt(v) / alpha))
    return np.where(n >= 2, half, np.inf)


def running_sd(x: np.ndarray) -> np.ndarray:
    n = np.arange(1, len(x) + 1)
    mean = np.cumsum(x) / n
    square = np.cumsum(x * x) / n
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.sqrt(np.maximum(square - mean**2, 0) * n / np.maximum(n - 1, 1))


def old_ever_missed(x: np.ndarray, truth: float, planned: int) -> bool:
    n = np.arange(1, len(x) + 1)
    mean = np.cumsum(x) / n
    half = asymptotic_half_width(n, running_sd(x), asymptotic_rho(planned))
    return bool(np.any(np.abs(mean - truth) > half))


# -- 1. coverage at every look ------------------------------------------------------------------------


def ever_miss(rng, n: int, reps: int, judge: dict) -> dict:
    """Studies of n comparisons (one baseline, Figure 1's first), every comparison voted once in the
    study's random order and the truth checked after each."""
    keys = ("uniform_people", "uniform_assisted", "sampled_people", "sampled_assisted", "old_uniform")
    missed = dict.fromkeys(keys, 0)
    for _ in range(reps):
        world = make_world(rng, n, shares=FIGURE_1[:1], **judge)
        truth = float(world.truth(1)[0, WIN])
        order = rng.permutation(n)
        y = (world.votes(rng, 0, order)[:, 0] == WIN).astype(float)
        _, _, counted = world.judge(rng, 0)
        f = counted[order, WIN]
        planned = cs_planned_n(n)
        cs = betting_cs(y, planned_n=planned)
        missed["uniform_people"] += _missed(cs, truth)
        missed["old_uniform"] += old_ever_missed(y, truth, n)
        terms, _, (lower, upper) = assisted_terms(y, f, float(counted[:, WIN].mean()))
        missed["uniform_assisted"] += _missed(betting_cs(terms, lower, upper, planned_n=planned), truth)
        pi = sampling_probabilities(_uncertainty(world, counted)[order], 0.5)
        drawn = rng.random(n) < pi
        for key, f_mean in (("sampled_people", None), ("sampled_assisted", float(counted[:, WIN].mean()))):
            terms, _, (lower, upper) = sampled_sequence_terms(y, f, drawn, pi, float(pi.min()), f_mean)
            missed[key] += _missed(betting_cs(terms, lower, upper, planned_n=planned), truth)
    return {k: v / reps for k, v in missed.items()}


def _uncertainty(world, counted: np.ndarray) -> np.ndarray:
    """The product's stand-in for the judge's expected error without probabilities: 0.1 where both
    orders agree on a winner, 0.25 otherwise (dashboard/estimates.py: uncertainty_by_comparison)."""
    decided = counted[:, TIE] < 0.5
    return np.where(decided, 0.1, 0.25)


def _missed(cs, truth: float) -> bool:
    return bool(np.any((cs.low > truth + 1e-12) | (cs.high < truth - 1e-12)))


# -- 2. coverage of one-look intervals ---------------------------------------------------------------

SHARES = (0.02, 0.05, 0.1, 0.2, 0.35, 0.5, 0.65, 0.8, 0.9, 0.95, 0.98)


def share_coverage(rng, reps: int) -> dict:
    """Per n and share, the coverage of Figure 1's intervals: by majority, every vote counting (3
    per prompt) and judge-assisted (n people's votes, the realistic judge on 4n more)."""
    from scipy.stats import binom

    out: dict = {"majority_exact": {}, "all_votes": {}, "judge_assisted": {}}
    for n in (10, 20, 30, 100):
        counts = np.arange(n + 1)
        bounds = [win_tie_loss({(1, 0, 0): x, (0, 1, 0): n - x}).win_ci for x in counts]
        low, high = np.array([b[0] for b in bounds]), np.array([b[1] for b in bounds])
        for share in SHARES:
            covered = (low <= share) & (share <= high)
            out["majority_exact"][f"{n}@{share}"] = float(binom.pmf(counts, n, share)[covered].sum())
            shares = np.array([[share, 0.0, 1 - share]])
            hits_all = hits_assisted = 0
            for _ in range(reps):
                world = make_world(rng, 5 * n, shares=shares, **JUDGES[HEADLINE])
                truth1 = float(world.people[0, :, WIN].mean())  # one vote counting: the mean share
                votes = world.votes(rng, 0, np.arange(n), k=3)
                patterns: dict = {}
                for row in votes:
                    key = (int((row == WIN).sum()), int((row == 2).sum()), int((row == TIE).sum()))
                    patterns[key] = patterns.get(key, 0) + 1
                lo, hi = win_tie_loss(patterns, "all").win_ci
                hits_all += lo <= truth1 <= hi
                _, _, counted = world.judge(rng, 0)
                y = (world.votes(rng, 0, np.arange(n))[:, 0] == WIN).astype(float)
                e = judge_assisted_mean(y, counted[:n, WIN], counted[:, WIN])
                hits_assisted += max(e.low, 0) <= truth1 <= min(e.high, 1)
            out["all_votes"][f"{n}@{share}"] = hits_all / reps
            out["judge_assisted"][f"{n}@{share}"] = hits_assisted / reps
    return {k: {"min": min(v.values()), "where_min": min(v, key=v.get), "by_n_and_share": v} for k, v in out.items()}


# -- 3 and 4. votes to a target ------------------------------------------------------------------------


def until_known(rng, items: int, target: float, judge: dict, every: int = 10) -> dict:
    """Three baselines of ``items`` comparisons; one vote per comparison, round robin over the
    baselines, each in its own random order; looked at every ``every`` votes. Votes until every
    baseline is within +-target: people alone with the betting sequence and with the asymptotic
    one; with the judge (uniform, PPI++ terms); a sampled study at rate 0.5 (votes where the judge
    is unsure, the widest baseline first, active inference's terms). Whether each ends covering."""
    world = make_world(rng, items, **judge)
    truth = world.truth(1)[:, WIN]
    planned = cs_planned_n(items)
    result = {}
    ys, fs, f_means, orders = [], [], [], []
    for b in range(world.baselines):
        order = rng.permutation(items)
        orders.append(order)
        ys.append((world.votes(rng, b, order)[:, 0] == WIN).astype(float))
        _, _, counted = world.judge(rng, b)
        fs.append(counted[order, WIN])
        f_means.append(float(counted[:, WIN].mean()))

    def first_within(widths: list[np.ndarray]) -> int:
        """Votes (round robin) until every baseline's width (by its own count) is within target."""
        per = []
        for w in widths:
            hit = np.flatnonzero(w <= target)
            per.append(int(hit[0]) + 1 if len(hit) else items * 10)
        need = max(per)
        return int(math.ceil(need / every) * every) * world.baselines

    people = [betting_cs(y, planned_n=planned) for y in ys]
    result["people_betting"] = first_within([(c.high - c.low) / 2 for c in people])
    old = []
    for y in ys:
        n = np.arange(1, items + 1)
        old.append(asymptotic_half_width(n, running_sd(y), asymptotic_rho(items)))
    result["people_asymptotic"] = first_within(old)
    assisted = []
    for y, f, fm in zip(ys, fs, f_means, strict=True):
        terms, _, (lower, upper) = assisted_terms(y, f, fm)
        assisted.append(betting_cs(terms, lower, upper, planned_n=planned))
    result["uniform_judge"] = first_within([(c.high - c.low) / 2 for c in assisted])
    # coverage at each one's stop
    result["covered_people"] = _covered_at(people, truth, result["people_betting"] // world.baselines, items)
    result["covered_judge"] = _covered_at(assisted, truth, result["uniform_judge"] // world.baselines, items)
    # a sampled study: people vote where the judge is unsure
    sampled = []
    for b in range(world.baselines):
        _, _, counted = world.judge(rng, b)
        pi = sampling_probabilities(_uncertainty(world, counted)[orders[b]], 0.5)
        drawn = rng.random(items) < pi
        terms, _, (lower, upper) = sampled_sequence_terms(ys[b], fs[b], drawn, pi, float(pi.min()), f_means[b])
        cs = betting_cs(terms, lower, upper, planned_n=planned)
        hit = np.flatnonzero((cs.high - cs.low) / 2 <= target)
        walked = int(hit[0]) + 1 if len(hit) else items
        sampled.append((int(drawn[:walked].sum()), walked < items or len(hit) > 0, cs.at(walked), truth[b]))
    result["sampled_judge"] = int(sum(v for v, *_ in sampled))
    result["sampled_reached"] = all(r for _, r, *_ in sampled)
    result["covered_sampled"] = [bool(lo <= t <= hi) for _, _, (lo, hi), t in sampled]
    return result


def _covered_at(sequences: list, truth: np.ndarray, stop: int, items: int) -> list[bool]:
    out = []
    for cs, t in zip(sequences, truth, strict=True):
        low, high = cs.at(min(stop, items))
        out.append(bool(low <= t <= high))
    return out


def equal_votes(rng, items: int, votes: int, reps: int, judge: dict) -> dict:
    """At ``votes`` people's votes per baseline (uniform), the judge-assisted interval's width over
    the people-only one, and how often each holds the truth."""
    widths, covered = {"people": [], "assisted": []}, {"people": 0, "assisted": 0}
    for _ in range(reps):
        world = make_world(rng, items, **judge)
        truth = world.truth(1)[:, WIN]
        for b in range(world.baselines):
            chosen = rng.choice(items, votes, replace=False)
            y = (world.votes(rng, b, chosen)[:, 0] == WIN).astype(float)
            _, _, counted = world.judge(rng, b)
            only = classical_mean(y)
            helped = judge_assisted_mean(y, counted[chosen, WIN], counted[:, WIN])
            for key, e in (("people", only), ("assisted", helped)):
                widths[key].append(e.high - e.low)
                covered[key] += e.low <= truth[b] <= e.high
    total = reps * len(FIGURE_1)
    return {
        "width_ratio": float(np.mean(widths["assisted"]) / np.mean(widths["people"])),
        "coverage_people": covered["people"] / total,
        "coverage_assisted": covered["assisted"] / total,
    }


# -- 5. length control -----------------------------------------------------------------------------


def length_error(rng, items: int, reps: int, people_length: float) -> dict:
    raw, controlled = [], []
    for _ in range(reps):
        judge = JUDGES[HEADLINE] | {"noise": 0.05, "judge_length": 2.0}  # a judge with a strong taste for length
        world = make_world(rng, items, people_length=people_length, **judge)
        truth = world.people[..., WIN].mean(axis=1) + world.people[..., TIE].mean(axis=1) / 2
        for b in range(world.baselines):
            _, _, counted = world.judge(rng, b)
            outcome = counted[:, WIN] + counted[:, TIE] / 2
            lc = length_controlled_win_rate(outcome, world.length[b])
            raw.append(abs(lc.raw - truth[b]) * 100)
            controlled.append(abs(lc.controlled - truth[b]) * 100)
    return {"raw_error_points": float(np.mean(raw)), "controlled_error_points": float(np.mean(controlled))}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=400, help="repetitions of each part (the sequential ones: /8)")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--smoke", action="store_true", help="a few repetitions of every part: seconds")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "evidence.json"))
    args = parser.parse_args()
    reps = 3 if args.smoke else args.reps
    items = 200 if args.smoke else 1000
    rng = np.random.default_rng(args.seed)
    started, load = time.monotonic(), os.getloadavg()[0]

    realistic = {name: kw for name, kw in JUDGES.items() if "oracle" not in name}
    judges = {name: agreement(make_world(rng, 2000, **kw), rng) for name, kw in realistic.items()}
    looks = {str(n): ever_miss(rng, n, reps * (2 if n < 300 else 1), JUDGES[HEADLINE]) for n in (20, 50, 300)}
    shares = share_coverage(rng, reps)

    sequential = max(reps // 8, 2)
    to_target = {}
    for name, kw in JUDGES.items():
        runs = [until_known(rng, items, 0.05, kw) for _ in range(sequential)]
        keys = ("people_betting", "people_asymptotic", "uniform_judge", "sampled_judge")
        mean = {k: float(np.mean([r[k] for r in runs])) for k in keys}
        to_target[name] = {
            **{f"votes_{k}": v for k, v in mean.items()},
            "betting_over_asymptotic": mean["people_betting"] / mean["people_asymptotic"],
            "uniform_judge_over_people": mean["uniform_judge"] / mean["people_betting"],
            "sampled_judge_over_people": mean["sampled_judge"] / mean["people_betting"],
            "sampled_reached_target": float(np.mean([r["sampled_reached"] for r in runs])),
            "coverage_at_stop_people": float(np.mean([c for r in runs for c in r["covered_people"]])),
            "coverage_at_stop_judge": float(np.mean([c for r in runs for c in r["covered_judge"]])),
            "coverage_at_stop_sampled": float(np.mean([c for r in runs for c in r["covered_sampled"]])),
        }
    votes = 50 if args.smoke else 200
    widths = {name: equal_votes(rng, items, votes, max(reps // 4, 2), kw) for name, kw in JUDGES.items()}
    length = {
        "people_without_a_taste_for_length": length_error(rng, items, max(reps // 10, 2), 0.0),
        "people_who_like_longer_answers_too": length_error(rng, items, max(reps // 10, 2), 1.0),
    }
    results = {
        "smoke": args.smoke,
        "seed": args.seed,
        "reps": reps,
        "items_per_baseline": items,
        "judges": judges,
        "headline_judge": HEADLINE,
        "ever_miss_every_look": looks,
        "share_interval_coverage": shares,
        "votes_to_5_points": to_target,
        "equal_votes_200": widths,
        "length_control": length,
        "seconds": round(time.monotonic() - started, 1),
        "load_1min_before": load,
        "load_1min_after": os.getloadavg()[0],
    }
    out = Path(args.out)
    if not args.smoke:
        out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps({k: v for k, v in results.items() if k != "share_interval_coverage"}, indent=1))
    lowest = {k: (round(v["min"], 3), v["where_min"]) for k, v in shares.items()}
    print("share interval coverage, lowest over n and share:", lowest)
    worst = max(v[k] for v in looks.values() for k in v if k != "old_uniform")
    print(f"ever-miss at every look, worst of the betting sequences: {worst:.3f}")
    headline = to_target[HEADLINE]
    print(
        f"votes to +-5 points, betting / asymptotic: {headline['betting_over_asymptotic']:.2f}; "
        f"with the {HEADLINE} judge / people alone: uniform {headline['uniform_judge_over_people']:.2f}, "
        f"sampled {headline['sampled_judge_over_people']:.2f}"
    )
    if not args.smoke:
        print(f"written to {out}")
    if not math.isfinite(worst):
        raise SystemExit("no estimate")


if __name__ == "__main__":
    main()
