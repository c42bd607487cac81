"""The evidence engine on simulated studies with a known truth (stats/evidence.py).

A study: B baselines, N comparisons each. Every comparison has its people's distribution over
(candidate wins, tie, baseline wins), drawn around the baseline's true shares; a vote is one
person's draw from it, and the truth is the mean of those distributions (what every person voting
on every comparison would give). The judge reports its own distribution per comparison: the
people's, tilted towards the longer answer (length bias), mixed with noise (its quality); its
verdict is a draw from that. Length differences are independent of quality, the candidate's
answers longer on average (as LIMA's are).

Measured, 1,000 repetitions each with a fixed seed (--reps to change):
- ppi_width_ratio, ppi_coverage: at equal people's votes (uniform, one vote each), the judge-assisted
  interval (PPI++) width over the people-only one, and how often it holds the truth;
- adaptive_votes_ratio, adaptive_coverage, adaptive_reached_target, uniform_coverage: people's votes
  until every baseline's win share is known to +-5 points with an anytime-valid interval (looked at
  every 10 votes), a sampled study as the product runs it (`study sample` at --rate: the widest
  baseline first, within it the next comparison drawn for people in the study's random order,
  chances from the judge's uncertainty; active inference's estimate over the walked prefix) over
  uniform (round robin, people only); whether the intervals at the stop hold the truth, and how
  often the sampled study reached the target before its comparisons ran out (per rate in
  adaptive_by_rate: a low rate runs out on 1,000 comparisons per baseline);
  widest_first_*: an adaptive study without a sampling plan (the widest baseline first, people only);
- raw_error_points, lc_error_points: the judge's win rate (a tie is half) against the people's, as
  counted and length-controlled.

    .venv/bin/python bench/evidence.py [--reps 1000] [--items 1000]
"""

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

from stats.evidence import (  # noqa: E402
    classical_mean,
    cs_half_width,
    cs_rho,
    judge_assisted_mean,
    length_controlled_win_rate,
    sampled_terms,
    sampling_probabilities,
)

WIN, TIE, LOSS = 0, 1, 2
# true people's shares per baseline (the paper's Figure 1 for Alpaca 65B, DaVinci003, Bard)
TRUTH = np.array([[0.53, 0.21, 0.26], [0.44, 0.21, 0.35], [0.33, 0.25, 0.42]])


def study(rng, items: int, concentration: float, noise: float, length_bias: float):
    """(people's distributions [B, N, 3], judge's distributions [B, N, 3], length differences [B, N])."""
    people = np.stack([rng.dirichlet(concentration * shares, size=items) for shares in TRUTH])
    length = rng.normal(120, 150, size=people.shape[:2])  # candidate minus baseline, tokens
    tilt = np.exp(length_bias * np.tanh(length / 100))
    judged = people * np.stack([tilt, np.ones_like(tilt), 1 / tilt], axis=-1)
    judged /= judged.sum(-1, keepdims=True)
    mixed = (1 - noise) * judged + noise * rng.dirichlet(np.ones(3), size=people.shape[:2])
    return people, mixed, length


def draw(rng, distributions: np.ndarray) -> np.ndarray:
    """One outcome per row of [..., 3] probabilities."""
    u = rng.random(distributions.shape[:-1])[..., None]
    return (u > np.cumsum(distributions, axis=-1)).sum(-1).clip(0, 2)


def agreement(rng, people, judge) -> float:
    """How often the judge's verdict is a person's (the judge and one person, each drawing)."""
    return float((draw(rng, people) == draw(rng, judge)).mean())


def equal_votes(rng, items, votes, **kw) -> dict:
    people, judge, _ = study(rng, items, **kw)
    truth = people[..., WIN].mean(axis=1)
    out = {"width_people": [], "width_assisted": [], "covered_people": [], "covered_assisted": []}
    for b in range(len(TRUTH)):
        chosen = rng.integers(0, items, size=votes)
        y = (draw(rng, people[b, chosen]) == WIN).astype(float)
        only = classical_mean(y)
        assisted = judge_assisted_mean(y, judge[b, chosen, WIN], judge[b, :, WIN])
        out["width_people"].append(only.high - only.low)
        out["width_assisted"].append(assisted.high - assisted.low)
        out["covered_people"].append(only.low <= truth[b] <= only.high)
        out["covered_assisted"].append(assisted.low <= truth[b] <= assisted.high)
    return out


def until_known(rng, items, target, rho, every=10, cap=20000, widest_first=False, **kw) -> tuple[int, list[bool]]:
    """Votes until every baseline's win share is within +-target (anytime-valid, people's votes
    alone), uniform (round robin, any item) or ``widest_first`` (what an adaptive study without a
    sampling plan does: the widest baseline first, any item of it); whether each final interval
    holds the truth."""
    people, _, _ = study(rng, items, **kw)
    truth = people[..., WIN].mean(axis=1)
    baselines = len(TRUTH)
    drawn: list[list[float]] = [[] for _ in range(baselines)]
    half = np.full(baselines, np.inf)
    votes = 0
    while votes < cap:
        for _ in range(every):
            b = int(np.argmax(half)) if widest_first and votes >= 20 * baselines else votes % baselines
            drawn[b].append(float(draw(rng, people[b, int(rng.integers(0, items))]) == WIN))
            votes += 1
        for b in range(baselines):
            if len(drawn[b]) > 1:
                half[b] = cs_half_width(len(drawn[b]), float(np.std(drawn[b], ddof=1)), rho)
        if (half <= target).all():
            break
    estimate = [float(np.mean(d)) for d in drawn]
    return votes, [bool(abs(estimate[b] - truth[b]) <= half[b]) for b in range(baselines)]


def sampled_until_known(rng, items, target, rate, every=10, **kw) -> tuple[int, list[bool], bool]:
    """A sampled study as the product runs it (`study sample`, the claim, dashboard/evidence.py):
    per baseline the comparisons in one random order, each drawn for people with its chance from
    the judge's uncertainty (stats.evidence.sampling_probabilities at ``rate``); each vote goes to
    the baseline whose interval is widest, to the next drawn comparison in its order; the estimate
    is active inference's over the walked prefix (stats.evidence.sampled_terms, the judge's weight
    tuned), with the study's anytime-valid interval (rho planned for every comparison, as the
    dashboard plans it). Returns the votes, whether each interval holds the truth, and whether
    every baseline reached the target before its comparisons ran out."""
    people, judge, _ = study(rng, items, **kw)
    truth = people[..., WIN].mean(axis=1)
    baselines = len(TRUTH)
    f = judge[..., WIN]  # the judge's soft verdict: its probability that the candidate wins
    pi = np.stack([sampling_probabilities(f[b] * (1 - f[b]), rate) for b in range(baselines)])
    order = np.stack([rng.permutation(items) for _ in range(baselines)])
    wanted = rng.random((baselines, items)) < pi[np.arange(baselines)[:, None], order]  # in walk order
    y = np.zeros((baselines, items))
    walked_to = np.zeros(baselines, dtype=int)  # items of the walk known (a prefix)
    half, estimate = np.full(baselines, np.inf), np.zeros(baselines)
    rho = cs_rho(items)
    votes = 0
    while True:
        for _ in range(every):
            open_ = [b for b in range(baselines) if walked_to[b] < items and half[b] > target]
            if not open_:
                break
            b = max(open_, key=lambda k: (half[k], -walked_to[k]))
            rest = np.flatnonzero(wanted[b, walked_to[b] :])
            if not len(rest):  # no drawn comparison left: the walk ends
                walked_to[b] = items
                continue
            at = walked_to[b] + int(rest[0])
            y[b, at] = float(draw(rng, people[b, order[b, at]]) == WIN)
            walked_to[b] = at + 1
            votes += 1
        for b in range(baselines):
            n = walked_to[b]
            if n < 2:
                continue
            idx = order[b, :n]
            terms, _ = sampled_terms(y[b, :n], f[b, idx], wanted[b, :n], pi[b, idx], f_mean=float(f[b].mean()))
            estimate[b] = float(terms.mean())
            half[b] = cs_half_width(n, float(terms.std(ddof=1)), rho)
        if all(half[b] <= target or walked_to[b] >= items for b in range(baselines)):
            break
    covered = [bool(abs(estimate[b] - truth[b]) <= half[b]) for b in range(baselines)]
    return votes, covered, bool((half <= target).all())


def length_error(rng, items, **kw) -> tuple[float, float]:
    people, judge, length = study(rng, items, **kw)
    truth = people[..., WIN].mean(axis=1) + people[..., TIE].mean(axis=1) / 2
    raw, controlled = [], []
    for b in range(len(TRUTH)):
        verdict = draw(rng, judge[b])
        outcome = np.where(verdict == WIN, 1.0, np.where(verdict == TIE, 0.5, 0.0))
        lc = length_controlled_win_rate(outcome, length[b])
        raw.append(abs(lc.raw - truth[b]) * 100)
        controlled.append(abs(lc.controlled - truth[b]) * 100)
    return float(np.mean(raw)), float(np.mean(controlled))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=1000)
    parser.add_argument("--items", type=int, default=1000, help="comparisons per baseline")
    parser.add_argument("--votes", type=int, default=200, help="people's votes per baseline, equal-votes part")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--judge-noise", type=float, default=0.05, help="0: the judge votes as a person would")
    parser.add_argument("--length-bias", type=float, default=2.0, help="the judge's logit per tanh(length/100)")
    parser.add_argument("--rate", type=float, default=0.5, help="the sampled study's rate (`study sample`'s default)")
    parser.add_argument("--rates", default="0.2,0.3,0.5,0.7", help="rates also measured")
    args = parser.parse_args()
    args.rates = sorted({float(r) for r in args.rates.split(",")} | {args.rate})
    # people agree with each other about as LIMA's crowd did; the judge about as often with them
    kw = {"concentration": 0.6, "noise": args.judge_noise, "length_bias": 0.0}
    biased = {**kw, "length_bias": args.length_bias}
    rng = np.random.default_rng(args.seed)
    started, load = time.monotonic(), os.getloadavg()[0]

    people, judge, _ = study(rng, args.items, **kw)
    measured = {"person_person": agreement(rng, people, people), "judge_person": agreement(rng, people, judge)}

    equal = {k: [] for k in ("width_people", "width_assisted", "covered_people", "covered_assisted")}
    for _ in range(args.reps):
        for key, values in equal_votes(rng, args.items, args.votes, **kw).items():
            equal[key] += values

    # the same at equal votes with a weaker judge (it agrees with people about 6 times in 10)
    weaker = {**kw, "noise": 0.35}
    people, judge, _ = study(rng, args.items, **weaker)
    weaker_agreement = agreement(rng, people, judge)
    weak = {k: [] for k in equal}
    for _ in range(args.reps // 4):
        for key, values in equal_votes(rng, args.items, args.votes, **weaker).items():
            weak[key] += values

    rho = cs_rho(args.items)  # planned for every comparison, as the study's dashboard plans it
    adaptive_reps = max(args.reps // 10, 20)
    uniform_votes, uniform_cover, widest_votes, widest_cover = [], [], [], []
    sampled: dict[float, dict[str, list]] = {r: {"votes": [], "covered": [], "reached": []} for r in args.rates}
    for _ in range(adaptive_reps):  # each a whole sequential study: fewer repetitions
        n, covered = until_known(rng, args.items, 0.05, rho, **kw)
        uniform_votes.append(n)
        uniform_cover += covered
        n, covered = until_known(rng, args.items, 0.05, rho, widest_first=True, **kw)
        widest_votes.append(n)
        widest_cover += covered
        for rate in args.rates:
            n, covered, reached = sampled_until_known(rng, args.items, 0.05, rate, **kw)
            sampled[rate]["votes"].append(n)
            sampled[rate]["covered"] += covered
            sampled[rate]["reached"].append(reached)
    headline = sampled[args.rate]

    raw, controlled = zip(*(length_error(rng, args.items, **biased) for _ in range(args.reps // 10)), strict=True)

    results = {
        "reps": args.reps,
        "sequential_reps": adaptive_reps,
        "items_per_baseline": args.items,
        "baselines": len(TRUTH),
        "agreement": measured,
        "equal_votes_per_baseline": args.votes,
        "ppi_width_ratio": float(np.mean(equal["width_assisted"]) / np.mean(equal["width_people"])),
        "ppi_coverage": float(np.mean(equal["covered_assisted"])),
        "people_only_coverage": float(np.mean(equal["covered_people"])),
        "weaker_judge_agreement": weaker_agreement,
        "weaker_judge_ppi_width_ratio": float(np.mean(weak["width_assisted"]) / np.mean(weak["width_people"])),
        "weaker_judge_ppi_coverage": float(np.mean(weak["covered_assisted"])),
        "target_half_width": 0.05,
        "uniform_votes_mean": float(np.mean(uniform_votes)),
        "adaptive_rate": args.rate,
        "adaptive_votes_mean": float(np.mean(headline["votes"])),
        "adaptive_votes_ratio": float(np.mean(headline["votes"]) / np.mean(uniform_votes)),
        "uniform_coverage": float(np.mean(uniform_cover)),
        "adaptive_coverage": float(np.mean(headline["covered"])),
        "adaptive_reached_target": float(np.mean(headline["reached"])),
        "adaptive_by_rate": {
            str(rate): {
                "votes_ratio": float(np.mean(r["votes"]) / np.mean(uniform_votes)),
                "coverage": float(np.mean(r["covered"])),
                "reached_target": float(np.mean(r["reached"])),
            }
            for rate, r in sampled.items()
        },
        "widest_first_votes_ratio": float(np.mean(widest_votes) / np.mean(uniform_votes)),
        "widest_first_coverage": float(np.mean(widest_cover)),
        "judge_length_bias_logit": biased["length_bias"],
        "raw_error_points": float(np.mean(raw)),
        "lc_error_points": float(np.mean(controlled)),
        "seconds": round(time.monotonic() - started, 1),
        "load_1min_before": load,
        "load_1min_after": os.getloadavg()[0],
    }
    out = ROOT / "bench" / "results" / "evidence.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    for key, value in results.items():
        print(f"{key:28} {value if not isinstance(value, float) else round(value, 4)}")
    print(f"written to {out.relative_to(ROOT)}")
    if not math.isfinite(results["ppi_width_ratio"]):
        raise SystemExit("no estimate")


if __name__ == "__main__":
    main()
