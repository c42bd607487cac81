"""A ranking study's ranking (stats/ranking.py on the study's votes and verdicts), what settles its
question, the pairs that can still change the answer, and its stop.

What each number estimates: for every pair of the study's systems, the chance that a person
prefers the first's answer to the second's over the study's prompts (a tie counts half; a
comparison counts once all its ``overlap`` votes are in, as the vote shares); the Bradley-Terry
strengths that fit those chances best; each system's rank-set, which holds its true rank among
the strengths, for every system at once and at every look, with probability at least 95%
(asymptotically). Four rankings are shown:

- people + judge: the people's votes correct the judge's verdicts pair by pair (PPI++), valid
  whatever the judge; the judge job is the one the study's stop reads (the first to finish over
  every comparison, fixed when it is first seen) unless the page asks for another;
- people alone: the same from the votes only;
- people alone, style held equal (Chatbot Arena's style control): the strengths a logistic
  Bradley-Terry model gives each system once the answers' differences in length, headers, list
  items and bold are accounted for, i.e. its strength against an answer styled like its own;
  they estimate something else than the others (a preference at equal style), so the study's
  stop never reads them;
- the judge alone: what the judge prefers, over every comparison it judged; its strengths
  estimate the judge's preferences, not the people's, and carry no guarantee about people.

The votes are a random sample of each pair's prompts (each pair's comparisons are walked in the
study's one random order), however the pairs were chosen: the active pairs depend on the votes in
so far only. docs/statistics.md says more."""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field

import numpy as np
from django.db import transaction
from django.utils import timezone

from evalsite.annotation.models import HumanJudgment, Study
from evalsite.annotation.studies import ranked_systems
from evalsite.core.columns import fetch_columns
from evalsite.dashboard.estimates import (
    _judge,
    _people,
    _row_columns,
    answer_styles,
    judge_columns,
    stop_judge,
    usable,
)
from evalsite.dashboard.stopping import first_usable_job
from evalsite.judging.models import JudgeJob
from stats.evidence import STYLE_FEATURES, style_differences
from stats.ranking import (
    PairShares,
    RankSets,
    Strengths,
    bradley_terry_from_shares,
    cs_multiplier,
    pair_shares,
    rank_sets,
    style_controlled_strengths,
)

ALPHA = 0.05
# a ranking's rows, each with the judge's outcome; STYLED_ROWS_FROM with both answers' stored
# style too (only the style-controlled ranking needs it)
ROWS_FROM = """
FROM annotation_comparison c
LEFT JOIN judging_judgeoutcome o ON o.comparison_id = c.id AND o.job_id = %s
WHERE c.study_id = %s AND NOT c.is_gold
"""
STYLED_ROWS_FROM = """
FROM annotation_comparison c
JOIN catalog_response cr ON cr.id = c.candidate_response_id
JOIN catalog_response br ON br.id = c.baseline_response_id
LEFT JOIN judging_judgeoutcome o ON o.comparison_id = c.id AND o.job_id = %s
WHERE c.study_id = %s AND NOT c.is_gold
"""
ARENA_PLANNED_VOTES = 1000  # an arena's intervals are narrowest near this many votes (valid at every n)


@dataclass(frozen=True)
class Ranked:
    """One way of ranking the systems: strengths (mean 0; NaN where not estimable), rank-sets."""

    label: str
    theta: np.ndarray
    low: np.ndarray
    high: np.ndarray
    connected: bool
    votes: int  # the people's complete comparisons it rests on (the judge alone: its verdicts)
    lam: float = 0.0
    cov: np.ndarray | None = None  # of the strengths


@dataclass(frozen=True)
class RankingResult:
    study: Study
    systems: list[str]
    goal: str
    combined: Ranked | None  # None: no usable judge job
    people: Ranked
    judge: Ranked | None
    job: JudgeJob | None
    comparisons: int  # every pair on every prompt (gold checks aside)
    settled: bool
    answer: str
    judge_worth: int | None  # people's votes the judge's verdicts were worth, at the study's n
    pairs: list[dict] = field(default_factory=list)
    more: int | None = None  # about how many more complete comparisons would settle the top, if as it seems
    both_bad: int = 0  # counted ties the person called "both are bad" (an arena's fourth choice)
    # the people's ranking with the answers' style held equal (Arena's style control), and what
    # each style feature moves (ranking(style=True) only)
    styled: Ranked | None = None
    style_effects: list[dict] = field(default_factory=list)

    @property
    def main(self) -> Ranked:
        """The ranking the study's question is read from: people + judge where a judge job is
        usable, else the people alone."""
        return self.combined or self.people

    def shown(self) -> list[tuple[str, Ranked]]:
        """The rankings a page or an export shows, by key: the main one, the people's alone, the
        people's with style held equal, the judge's alone (those computed)."""
        rankings = (("main", self.main), ("people", self.people), ("style", self.styled), ("judge", self.judge))
        return [(key, ranked) for key, ranked in rankings if ranked is not None]

    def rows(self) -> list[dict]:
        """One row per system, strongest first (by the main ranking's strengths)."""
        order = np.argsort(-np.nan_to_num(self.main.theta, nan=-np.inf), kind="stable")
        out = []
        for i in order:
            row = {"system": self.systems[i]}
            for key, ranked in self.shown():
                if ranked is None:
                    continue
                row[key] = {
                    "theta": None if math.isnan(ranked.theta[i]) else float(ranked.theta[i]),
                    "low": int(ranked.low[i]),
                    "high": int(ranked.high[i]),
                    "set": rank_label(int(ranked.low[i]), int(ranked.high[i])),
                }
            out.append(row)
        return out


def as_dict(result: RankingResult) -> dict:
    """The page's numbers, for the JSON export."""
    return {
        "study": result.study.name,
        "goal": result.goal,
        "settled": result.settled,
        "answer": result.answer,
        "complete_comparisons": result.main.votes,
        "comparisons": result.comparisons,
        "judge_job": result.job.pk if result.job else None,
        "judge_weight": result.combined.lam if result.combined else None,
        "judge_worth_votes": result.judge_worth,
        "both_bad": result.both_bad,
        "style_effects": result.style_effects,
        "alpha": ALPHA,
        "systems": result.rows(),
        "pairs": result.pairs,
    }


def write_csv(result: RankingResult, out) -> None:
    """One row a system: its rank-sets and strengths in each ranking shown."""
    writer = csv.writer(out)
    keys = [key for key, _ in result.shown()]
    header = ["system"]
    for key in keys:
        header += [f"{key}_rank_low", f"{key}_rank_high", f"{key}_strength"]
    writer.writerow(header)
    for row in result.rows():
        line = [row["system"]]
        for key in keys:
            line += [row[key]["low"], row[key]["high"], "" if row[key]["theta"] is None else f"{row[key]['theta']:.4f}"]
        writer.writerow(line)


def rank_label(low: int, high: int) -> str:
    return str(low) if low == high else f"{low}-{high}"


STYLE_COLUMNS = {"cand_response", "base_response"} | {
    f"{side}_{i}" for side in ("cand", "base") for i in range(len(STYLE_FEATURES))
}


def _columns(study: Study, job: JudgeJob | None, style: bool) -> dict[str, np.ndarray]:
    wanted = {"baseline", "votes_candidate", "votes_baseline", "votes_tie", "completed"}
    columns = {name: sql for name, sql in _row_columns(style=style).items() if name in wanted or name in STYLE_COLUMNS}
    columns |= judge_columns()
    columns["first"] = "COALESCE(c.first_system_id, 0)"
    source = STYLED_ROWS_FROM if style else ROWS_FROM
    return fetch_columns(columns, source, "c.draw_order, c.id", [job.pk if job else -1, study.pk])


def _style_differences(col: dict[str, np.ndarray]) -> np.ndarray:
    """Per comparison, the normalised difference of each STYLE_FEATURES between the first
    system's answer and the second's (Arena's (a - b) / (a + b))."""
    first, second = answer_styles(col)
    return np.column_stack([style_differences(first[:, i], second[:, i]) for i in range(len(STYLE_FEATURES))])


def _ranked(label: str, k: int, shares: PairShares, n: int, planned: int) -> tuple[Ranked, Strengths]:
    strengths = bradley_terry_from_shares(k, shares)
    return _ranked_from(label, strengths, n, planned, shares.lam), strengths


def _ranked_from(label: str, strengths: Strengths, n: int, planned: int, lam: float = 0.0) -> Ranked:
    k = len(strengths.theta)
    sets: RankSets = rank_sets(strengths, n, ALPHA, planned_n=planned)
    theta = strengths.theta if strengths.connected else np.full(k, np.nan)
    return Ranked(label, theta, sets.low, sets.high, strengths.connected, n, lam, strengths.cov)


def _style_controlled(k, first, second, y, differences, n: int, planned: int) -> tuple[Ranked, list[dict]]:
    """The people's ranking with the answers' style held equal, and per style feature fitted how
    many points a person's preference moves when one answer has twice the other's (a normalised
    difference of 1/3, between systems of equal strength), with a 95% interval (at this look)."""
    fit = style_controlled_strengths(k, first, second, y, differences, STYLE_FEATURES)
    ranked = _ranked_from("people alone, style held equal", fit.strengths, n, planned)
    effects = []
    for name, g, se in zip(fit.features, fit.coefficients, fit.se, strict=True):
        points = [100 * (1 / (1 + math.exp(-value / 3)) - 0.5) for value in (g, g - 1.96 * se, g + 1.96 * se)]
        effects.append({"feature": name, "points": points[0], "low": points[1], "high": points[2]})
    return ranked, effects


def rule_job(study: Study) -> JudgeJob | None:
    """The judge job a ranking study's stop reads: the one fixed on it (while usable), else its
    first job that finished over every comparison (not yet recorded: ``decide`` records it)."""
    return stop_judge(study) if study.target_judge_job is not None else first_usable_job(study)


def ranking(study: Study, job: JudgeJob | None = None, style: bool = False) -> RankingResult:
    """The study's rankings from its votes and ``job``'s verdicts (default: the stop's judge);
    with ``style``, the people's ranking with style held equal too (it reads both answers' style:
    what the page and the exports show, not what a claim or the stop needs)."""
    job = job if job is not None else rule_job(study)
    systems = ranked_systems(study)
    index = {s.pk: i for i, s in enumerate(systems)}
    k = len(systems)
    col = _columns(study, job if usable(job) else None, style)
    first = np.array([index.get(int(pk), -1) for pk in col["first"]], dtype=int)
    second = np.array([index.get(int(pk), -1) for pk in col["baseline"]], dtype=int)
    known = (first >= 0) & (second >= 0)
    complete = ~np.isnan(col["completed"])
    people = _people(col["votes_candidate"], col["votes_baseline"], col["votes_tie"], complete, "all")
    y = people[:, 0] + 0.5 * people[:, 1]
    view = _judge(col["outcome"], col["p_win"], np.column_stack([col["p_tie_a"], col["p_tie_b"]]))
    f = view[:, 0] + 0.5 * view[:, 1]
    voted = known & ~np.isnan(y)
    judged = known & ~np.isnan(f)
    # the votes the every-look intervals are tuned for, fixed before the first vote: a ranking
    # study's comparisons; an arena's comparisons grow with its votes, so a fixed number
    comparisons = int(known.sum())
    n, planned = int(voted.sum()), (ARENA_PLANNED_VOTES if study.kind == Study.Kind.ARENA else comparisons)
    people_shares = pair_shares(k, (first[voted], second[voted], y[voted], y[voted]))
    alone, people_strengths = _ranked("people alone", k, people_shares, n, planned)
    combined = judge_only = None
    worth = None
    if usable(job) and judged.any():
        both = voted & judged
        shares = pair_shares(
            k, (first[both], second[both], y[both], f[both]), (first[judged], second[judged], f[judged])
        )
        combined, combined_strengths = _ranked("people + judge", k, shares, int(both.sum()), planned)
        judge_shares = pair_shares(k, (first[judged], second[judged], f[judged], f[judged]))
        judge_only, _ = _ranked("the judge alone", k, judge_shares, int(judged.sum()), planned)
        worth = _worth(people_strengths, combined_strengths, n)
    styled: Ranked | None = None
    style_effects: list[dict] = []
    if style:
        styled, style_effects = _style_controlled(
            k, first[voted], second[voted], y[voted], _style_differences(col)[voted], n, planned
        )
    main = combined or alone
    settled, answer = settles(study.ranking_goal or Study.RankingGoal.TOP, main, [s.name for s in systems], n)
    pairs = _pair_rows(systems, people_shares)
    most = 10 * ARENA_PLANNED_VOTES if study.kind == Study.Kind.ARENA else comparisons
    more = None if settled else more_to_settle_top(main, planned, most)
    if more is not None:
        answer += f"; about {more} more complete comparisons would settle the top if the first two differ as they seem"
    return RankingResult(
        study=study,
        systems=[s.name for s in systems],
        goal=study.ranking_goal,
        combined=combined,
        people=alone,
        judge=judge_only,
        job=job if usable(job) else None,
        comparisons=comparisons,
        settled=settled,
        answer=answer,
        judge_worth=worth,
        styled=styled,
        style_effects=style_effects,
        pairs=pairs,
        more=more,
        both_bad=HumanJudgment.objects.filter(
            comparison__study=study, comparison__completed_at__isnull=False, both_bad=True
        ).count(),
    )


def _worth(people: Strengths, combined: Strengths, n: int) -> int | None:
    """How many more people's votes the judge was worth: the people alone would need n times the
    ratio of the strengths' total variances (people alone over people + judge) for the same
    precision."""
    if not (people.connected and combined.connected) or n == 0:
        return None
    alone, helped = float(np.trace(people.cov)), float(np.trace(combined.cov))
    if not (np.isfinite(alone) and np.isfinite(helped)) or helped <= 0:
        return None
    return max(round(n * alone / helped) - n, 0)


def _pair_rows(systems, shares: PairShares) -> list[dict]:
    return [
        {
            "first": systems[int(a)].name,
            "second": systems[int(b)].name,
            "share": float(p),
            "votes": int(v),
        }
        for a, b, p, v in zip(shares.first, shares.second, shares.share, shares.people, strict=True)
    ]


def more_to_settle_top(ranked: Ranked, planned: int, most: int) -> int | None:
    """About how many more complete comparisons would tell the strongest system from the second:
    the n at which their difference, as estimated now, would clear its every-look interval with
    the interval shrinking as 1 / sqrt(n) (votes spread as they have been). None where they look
    equal, or past ``most`` complete comparisons (a ranking study: all it has)."""
    k = len(ranked.theta)
    if not ranked.connected or ranked.cov is None or k < 2 or ranked.votes == 0:
        return None
    first, second = np.argsort(-ranked.theta)[:2]
    gap = float(ranked.theta[first] - ranked.theta[second])
    var = float(ranked.cov[first, first] + ranked.cov[second, second] - 2 * ranked.cov[first, second])
    if gap <= 0 or var <= 0:
        return None
    se, n, pairs = math.sqrt(var), ranked.votes, k * (k - 1) // 2
    for more in range(0, most - n + 1):
        total = n + more
        if cs_multiplier(total, ALPHA / pairs, planned) * se * math.sqrt(n / total) < gap:
            return more if more else None
    return None


def _top_k(goal: str) -> int | None:
    return 1 if goal == "top" else int(goal[3:]) if goal.startswith("top") else None


def settles(goal: str, ranked: Ranked, names: list[str], n: int) -> tuple[bool, str]:
    """Whether the rank-sets answer the study's question, and the answer (or what is still open)."""
    k = len(names)
    if not ranked.connected:
        return False, f"not yet: {n} complete comparisons do not join every system to the others"
    top = _top_k(goal)
    if top is None:  # the full order
        if np.all(ranked.low == ranked.high):
            order = [names[i] for i in np.argsort(ranked.low)]
            return True, "settled: the full order is " + " > ".join(order)
        open_ = [names[i] for i in range(k) if ranked.low[i] != ranked.high[i]]
        return False, f"not yet: the order of {', '.join(open_)} is open after {n} complete comparisons"
    inside = [i for i in range(k) if ranked.high[i] <= top]
    if len(inside) == top:
        best = ", ".join(names[i] for i in sorted(inside, key=lambda i: -ranked.theta[i]))
        what = "the best system is" if top == 1 else f"the top {top} are"
        return True, f"settled: {what} {best}"
    maybe = [names[i] for i in range(k) if ranked.low[i] <= top and ranked.high[i] > top]
    what = "may be first" if top == 1 else f"may be in the top {top}"
    return False, f"not yet: {', '.join(maybe)} {what} (after {n} complete comparisons)"


def active_pairs(study: Study) -> list[tuple[int, int]]:
    """The pairs (first system id, second) whose next votes can change the answer to the study's
    question: the leader (the strongest so far) against each system that may still be first and
    is not yet ordered against it (bench/ranking.py measures this rule against uniform pairs); for
    a top-k or full-order question, every pair not yet ordered whose systems' rank-sets overlap
    the boundary still open. Empty when settled; every pair while the votes join too few systems."""
    result = ranking(study)
    systems = ranked_systems(study)
    ids = [s.pk for s in systems]
    k = len(ids)
    main = result.main
    all_pairs = [(ids[i], ids[j]) for i in range(k) for j in range(i + 1, k)]
    if result.settled:
        return []
    if not main.connected:
        return all_pairs
    overlap = [
        (i, j)
        for i in range(k)
        for j in range(i + 1, k)
        if main.low[i] <= main.high[j] and main.low[j] <= main.high[i]  # neither surely ahead
    ]
    top = _top_k(result.goal or Study.RankingGoal.TOP)
    if top == 1:
        leader = int(np.nanargmax(main.theta))
        contenders = {i for i in range(k) if main.low[i] == 1}
        chosen = [(i, j) for i, j in overlap if leader in (i, j) and ({i, j} - {leader}) <= contenders]
    elif top is not None:
        open_ = {i for i in range(k) if main.low[i] <= top < main.high[i]}
        chosen = [(i, j) for i, j in overlap if i in open_ or j in open_]
    else:
        chosen = overlap
    return [(ids[i], ids[j]) for i, j in chosen] or all_pairs


def decide(study: Study) -> RankingResult:
    """A ranking study's stop: the rule's judge recorded once it is usable, then, the first time
    the question is settled, the study marked as having enough (no new comparison is started; the
    started ones are finished). The periodic check (dashboard.check_targets) calls it."""
    if study.target_judge_job is None:
        job = first_usable_job(study)
        if job is not None:
            Study.objects.filter(pk=study.pk, target_judge_job__isnull=True).update(target_judge_job=job.pk)
            study.refresh_from_db(fields=["target_judge_job"])
    result = ranking(study)
    if result.settled and study.enough_at is None and study.status == Study.Status.OPEN:
        with transaction.atomic():
            if Study.objects.filter(pk=study.pk, enough_at__isnull=True).update(enough_at=timezone.now()):
                study.refresh_from_db(fields=["enough_at"])
    return result
