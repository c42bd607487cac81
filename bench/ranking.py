"""Ranking six systems with people and a judge, simulated with a known truth (stats/ranking.py):
do the rank-sets cover the true ranks at every look, how many people's votes settle the top
system with the judge's help and without, and with pairs chosen where the ranking is unsure
(active) against pairs drawn uniformly.

The world. Six systems with Bradley-Terry strengths 0, 0.25, 0.45, 0.7, 0.9, 1.3; every pair has
a pool of 300 prompts, each with its own chance that a person prefers the first system (the
strengths' difference plus a prompt effect, N(0, 2.5) on the logit scale: people mostly agree on
a prompt, as LIMA's did); a person's vote is a
tie one time in five, else a draw from that chance. The judge, realistic: its own view of each
prompt (the people's logit plus N(0, noise)), one verdict per order at temperature 0 (the same
prompt always gets the same verdict), the answer shown first favoured by ``position`` on the logit
scale, the two orders counted as one (agreeing: that outcome; disagreeing: a tie); the noise is
set so that the judge agrees with a person's vote about 70% of the time, tie-discounted as the
paper measures it (measured and reported).
The judge has judged every prompt of every pair. Beside it, labelled as the best case, an oracle
judge (each prompt's true chance, no position bias).

A run: people vote one at a time on a pair (uniform, or active: the strongest system so far against
each system that may still be first and is not yet ordered against it, with a floor of 10%
uniform), on a prompt drawn at random
from the pair's pool; every 25 votes the rank-sets are read (a look), and the run stops when one
system's rank-set is {1} or at 4,000 votes.

    .venv/bin/python bench/ranking.py [--runs 200]
    .venv/bin/python bench/ranking.py --smoke     # 4 runs of at most 400 votes, nothing written

Writes bench/results/ranking.json."""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from stats.ranking import bradley_terry_from_shares, pair_shares, rank_sets  # noqa: E402

THETA = np.array([0.0, 0.3, 0.6, 0.9, 1.2, 2.0])
POOL = 300
PROMPT_SD = 2.5
TIE = 0.2
LOOK = 25
ALPHA = 0.05


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


class World:
    """The pools, the people's chances per prompt, and the judge's verdicts on every prompt."""

    def __init__(
        self,
        rng: np.random.Generator,
        noise: float,
        position: float,
        oracle: bool = False,
        soft: bool = False,
        pool: int = POOL,
    ):
        k = len(THETA)
        self.pool = pool
        self.pairs = [(i, j) for i in range(k) for j in range(i + 1, k)]
        self.chance = {}
        self.judge = {}
        for i, j in self.pairs:
            logit = THETA[i] - THETA[j] + rng.normal(0, PROMPT_SD, pool)
            p = sigmoid(logit)
            self.chance[(i, j)] = p
            if oracle:  # the best case: the people's expected outcome itself
                self.judge[(i, j)] = TIE * 0.5 + (1 - TIE) * p
                continue
            view = logit + rng.normal(0, noise, pool)
            if soft:  # its probability verdicts (the score method): P(i better) in each order, averaged
                self.judge[(i, j)] = (sigmoid(view + position) + 1 - sigmoid(-view + position)) / 2
                continue
            first = sigmoid(view + position) > 0.5  # i shown first: does the judge pick i?
            second = sigmoid(-view + position) > 0.5  # j shown first: does it pick j?
            self.judge[(i, j)] = np.where(first & ~second, 1.0, np.where(~first & second, 0.0, 0.5))

    def vote(self, rng, pair, prompt) -> float:
        if rng.random() < TIE:
            return 0.5
        return 1.0 if rng.random() < self.chance[pair][prompt] else 0.0

    def people_agreement(self, rng, n: int = 20000) -> float:
        """Two people's votes on the same prompt, scored as ``agreement`` scores the judge: what a
        judge that agrees with a person as often is worth no more than (a second person's vote)."""
        score = 0.0
        for _ in range(n):
            pair = self.pairs[rng.integers(len(self.pairs))]
            prompt = rng.integers(self.pool)
            one, two = self.vote(rng, pair, prompt), self.vote(rng, pair, prompt)
            score += 1.0 if one == two else 0.5 if 0.5 in (one, two) else 0.0
        return score / n

    def agreement(self, rng, n: int = 20000) -> float:
        """The judge's agreement with a person's vote, tie-discounted as the paper measures it (the
        same outcome 1, a tie against a winner 0.5, opposite winners 0)."""
        score = 0.0
        for _ in range(n):
            pair = self.pairs[rng.integers(len(self.pairs))]
            prompt = rng.integers(self.pool)
            person, judge = self.vote(rng, pair, prompt), self.judge[pair][prompt]
            score += 1.0 if person == judge else 0.5 if 0.5 in (person, judge) else 0.0
        return score / n


def run(world: World, rng, with_judge: bool, active: bool, max_votes: int) -> dict:
    k = len(THETA)
    unused = {pair: list(rng.permutation(world.pool)) for pair in world.pairs}
    first, second, y, f = [], [], [], []
    judged = [(i, j, world.judge[(i, j)]) for i, j in world.pairs]
    all_first = np.concatenate([np.full(world.pool, i) for i, _, _ in judged])
    all_second = np.concatenate([np.full(world.pool, j) for _, j, _ in judged])
    all_f = np.concatenate([v for _, _, v in judged])
    covered, settled_at, settled = [], None, None
    candidates = list(range(len(world.pairs)))
    for n in range(1, max_votes + 1):
        pool = candidates if active and rng.random() >= 0.1 else range(len(world.pairs))
        pool = [p for p in pool if unused[world.pairs[p]]] or [
            p for p in range(len(world.pairs)) if unused[world.pairs[p]]
        ]
        pair = world.pairs[pool[rng.integers(len(pool))]]
        prompt = unused[pair].pop()
        first.append(pair[0])
        second.append(pair[1])
        y.append(world.vote(rng, pair, prompt))
        f.append(world.judge[pair][prompt])
        if n % LOOK:
            continue
        people = (np.array(first), np.array(second), np.array(y), np.array(f))
        shares = pair_shares(k, people, (all_first, all_second, all_f) if with_judge else None)
        strengths = bradley_terry_from_shares(k, shares)
        sets = rank_sets(strengths, n, ALPHA, planned_n=max_votes)
        covered.append(sets.covers(THETA))
        top = sets.settled_top()
        if top is not None:
            settled_at, settled = n, top
            break
        # active: the leader (the strongest so far) against each system that may still be first
        # and is not yet ordered against it: the pairs whose order settles the top
        leader = int(np.argmax(strengths.theta)) if strengths.connected else -1
        contenders = np.flatnonzero(sets.low == 1)
        candidates = [
            p
            for p, (i, j) in enumerate(world.pairs)
            if leader in (i, j)
            and (j if i == leader else i) in contenders
            and not (sets.stronger[i, j] or sets.stronger[j, i])
        ] or list(range(len(world.pairs)))
    return {"votes": settled_at or max_votes, "settled": settled, "covered": covered, "lam": shares.lam}


def configuration(name, world_args, with_judge, active, runs, max_votes, seed, pool: int = POOL) -> dict:
    rng = np.random.default_rng(seed)
    results = [run(World(rng, *world_args, pool=pool), rng, with_judge, active, max_votes) for _ in range(runs)]
    looks = max(len(r["covered"]) for r in results)
    per_look = [
        float(np.mean([r["covered"][t] for r in results if len(r["covered"]) > t]))
        for t in range(looks)
        if sum(len(r["covered"]) > t for r in results) >= max(5, runs // 10)  # looks enough runs reached
    ]
    top = int(np.argmax(THETA))
    return {
        "configuration": name,
        "runs": runs,
        "votes_to_settle_median": statistics.median(r["votes"] for r in results),
        "votes_to_settle_mean": float(np.mean([r["votes"] for r in results])),
        # the mean's standard error over the runs (each run its own world and people)
        "votes_to_settle_mean_se": float(np.std([r["votes"] for r in results], ddof=1) / np.sqrt(runs)),
        "settled_share": float(np.mean([r["settled"] is not None for r in results])),
        "settled_wrong": int(sum(r["settled"] is not None and r["settled"] != top for r in results)),
        "coverage_min_over_looks": min(per_look) if per_look else None,
        "coverage_every_look_of_a_run": float(np.mean([all(r["covered"]) for r in results])),
        "judge_weight_mean": float(np.mean([r["lam"] for r in results])),
    }


def ratio(a: dict, b: dict) -> float:
    return a["votes_to_settle_mean"] / b["votes_to_settle_mean"]


def ratio_se(a: dict, b: dict) -> float:
    """The ratio of two means' standard error by the delta method (independent runs)."""
    return ratio(a, b) * math.hypot(
        a["votes_to_settle_mean_se"] / a["votes_to_settle_mean"],
        b["votes_to_settle_mean_se"] / b["votes_to_settle_mean"],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--max-votes", type=int, default=4000)
    parser.add_argument("--noise", type=float, default=1.9, help="the judge's view: logit noise")
    parser.add_argument("--position", type=float, default=0.5, help="the judge's first-position bonus (logit)")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument(
        "--pool", type=int, default=POOL, help="prompts a pair (not 300: written to ranking-poolN.json)"
    )
    parser.add_argument("--smoke", action="store_true", help="4 runs of at most 400 votes, nothing written")
    args = parser.parse_args()
    if args.smoke:
        args.runs, args.max_votes = 4, 400
    started = time.monotonic()
    realistic = (args.noise, args.position)
    world = World(np.random.default_rng(args.seed), *realistic, pool=args.pool)
    agreement = world.agreement(np.random.default_rng(1))
    people_agreement = world.people_agreement(np.random.default_rng(1))
    forms = [  # name, the world's judge, with the judge, active pairs
        ("people alone, uniform pairs", realistic, False, False),
        ("people alone, active pairs", realistic, False, True),
        ("people + judge, uniform pairs", realistic, True, False),
        ("people + judge, active pairs", realistic, True, True),
        ("people + the judge's probabilities, active pairs", (*realistic, False, True), True, True),
        ("best case: people + oracle judge, active pairs", (0, 0, True), True, True),
    ]
    rows = [
        configuration(name, judge, helped, active, args.runs, args.max_votes, args.seed, args.pool)
        for name, judge, helped, active in forms
    ]
    by = {r["configuration"]: r for r in rows}
    report = {
        "systems": THETA.tolist(),
        "pool_per_pair": args.pool,
        "judge": {"noise": args.noise, "position": args.position, "agreement_with_a_person": agreement},
        # two people on the same prompt, scored the same way: the judge agrees with a person about
        # as often as another person does, and a second person's vote explains little of a vote
        "people_agreement": people_agreement,
        "look_every": LOOK,
        "alpha": ALPHA,
        "max_votes": args.max_votes,
        "configurations": rows,
        "judge_over_people_votes": ratio(by["people + judge, active pairs"], by["people alone, active pairs"]),
        "judge_over_people_votes_se": ratio_se(by["people + judge, active pairs"], by["people alone, active pairs"]),
        "probabilities_over_people_votes": ratio(
            by["people + the judge's probabilities, active pairs"], by["people alone, active pairs"]
        ),
        "oracle_over_people_votes": ratio(
            by["best case: people + oracle judge, active pairs"], by["people alone, active pairs"]
        ),
        "active_over_uniform_votes": by["people + judge, active pairs"]["votes_to_settle_mean"]
        / by["people + judge, uniform pairs"]["votes_to_settle_mean"],
        "seconds": time.monotonic() - started,
        "load_1min": os.getloadavg()[0],
    }
    print(
        f"the judge's agreement with a person's vote, tie-discounted: {agreement:.1%} (noise {args.noise}, "
        f"position {args.position}); two people's: {people_agreement:.1%}; {args.pool} prompts a pair"
    )
    for r in rows:
        print(
            f"{r['configuration']:48} votes to settle the top: median {r['votes_to_settle_median']:.0f}, "
            f"mean {r['votes_to_settle_mean']:.0f} (settled {r['settled_share']:.0%}, wrong {r['settled_wrong']}); "
            f"coverage: lowest look {r['coverage_min_over_looks']}, every look of a run "
            f"{r['coverage_every_look_of_a_run']:.2f}; judge weight {r['judge_weight_mean']:.2f}"
        )
    print(
        f"people + judge / people alone (active): {report['judge_over_people_votes']:.2f}x the votes "
        f"(+-{report['judge_over_people_votes_se']:.2f}; its probabilities "
        f"{report['probabilities_over_people_votes']:.2f}x, "
        f"the oracle {report['oracle_over_people_votes']:.2f}x); "
        f"active / uniform (with the judge): {report['active_over_uniform_votes']:.2f}x"
    )
    if args.smoke:
        return
    out = ROOT / "bench" / "results" / ("ranking.json" if args.pool == POOL else f"ranking-pool{args.pool}.json")
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
