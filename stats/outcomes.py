"""Win / tie / loss with honest intervals. Outcomes are from the candidate's side:
"candidate" (the candidate wins), "baseline" (it loses) or "tie".

A comparison's votes are summarised as a pattern (candidate votes, baseline votes, tie votes).
Intervals hold at any number of comparisons and any share (stats/intervals.py): exact
Clopper-Pearson where each comparison counts once (the majority rule, the judge's one outcome),
Korn-Graubard's effective-sample-size form of it where a comparison holds several votes that all
count (rule "all": prompts are the unit, as a cluster bootstrap resamples them). The percentile
bootstrap used before collapsed to zero width at extreme shares (29 safe of 30 shown as
"100% [100, 100]")."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypedDict, TypeVar

import numpy as np

from stats.intervals import share_interval

WIN, LOSS, TIE = "candidate", "baseline", "tie"
Pattern = tuple[int, int, int]  # (candidate votes, baseline votes, tie votes)
K = TypeVar("K", bound=Hashable)


def majority(pattern: Pattern) -> str:
    """One outcome per comparison: the most votes; a draw between the top two is a tie."""
    cand, base, tie = pattern
    top = max(cand, base, tie)
    if [cand, base, tie].count(top) > 1:
        return TIE
    return WIN if cand == top else LOSS if base == top else TIE


class SharesDict(TypedDict):
    """Shares.as_dict(): what pages, figures and exports read."""

    n: int
    votes: int
    win: float
    tie: float
    loss: float
    win_ci: tuple[float, float] | None
    loss_ci: tuple[float, float] | None


@dataclass(frozen=True)
class Shares:
    n: int  # prompts (comparisons) counted
    votes: int
    win: float
    tie: float
    loss: float
    win_ci: tuple[float, float] | None = None
    loss_ci: tuple[float, float] | None = None

    def as_dict(self) -> SharesDict:
        return {
            "n": self.n,
            "votes": self.votes,
            "win": self.win,
            "tie": self.tie,
            "loss": self.loss,
            "win_ci": self.win_ci,
            "loss_ci": self.loss_ci,
        }


def _vote_vectors(patterns: Mapping[Pattern, int], rule: str) -> tuple[np.ndarray, np.ndarray]:
    """Per pattern: its (win, tie, loss) contribution and its count of prompts."""
    keys = list(patterns)
    counts = np.array([patterns[k] for k in keys], dtype=float)
    if rule == "majority":
        rows: list[list[float]] = [
            [float(majority(k) == WIN), float(majority(k) == TIE), float(majority(k) == LOSS)] for k in keys
        ]
    elif rule == "all":
        rows = [[float(k[0]), float(k[2]), float(k[1])] for k in keys]
    else:
        raise ValueError("rule must be 'majority' or 'all'")
    return np.array(rows, dtype=float).reshape(len(keys), 3), counts


def _shares(vectors: np.ndarray, counts: np.ndarray, votes: int, level: float) -> Shares:
    """Shares of (win, tie, loss) over units whose rows of ``vectors`` are their labels of each,
    ``counts`` units alike, with the win and loss shares' intervals."""
    n = int(round(counts.sum()))
    totals = counts @ vectors
    if not n or totals.sum() <= 0:
        return Shares(0, votes, 0.0, 0.0, 0.0)
    share = totals / totals.sum()
    labels = vectors.sum(axis=1)
    win_ci, loss_ci = (share_interval(vectors[:, k], labels, counts, level)[:2] for k in (0, 2))
    return Shares(n, votes, float(share[0]), float(share[1]), float(share[2]), win_ci, loss_ci)


def win_tie_loss(patterns: Mapping[Pattern, int], rule: str = "majority", level: float = 0.95) -> Shares:
    """Shares of win / tie / loss over prompts, with intervals on the win and loss shares that hold
    at any n. ``rule`` is "majority" (one outcome per comparison: exact Clopper-Pearson) or "all"
    (every vote counts; prompts are still the unit: Korn-Graubard)."""
    patterns = {k: v for k, v in patterns.items() if v > 0 and sum(k) > 0}
    if not patterns:
        return Shares(0, 0, 0.0, 0.0, 0.0)
    vectors, counts = _vote_vectors(patterns, rule)
    votes = int(sum(sum(k) * v for k, v in patterns.items()))
    return _shares(vectors, counts, votes, level)


def label_shares(per_unit: Iterable[Mapping[str, int]], win: str, loss: str, tie: str = "") -> Shares:
    """Shares of three labels counted per unit (a response's grades, a conversation's graded turns,
    a prompt's safe / unsafe verdicts) read as win / loss / tie: every label counts, and the unit is
    what the intervals treat as drawn, as win_tie_loss does with comparisons."""
    patterns = Counter((c.get(win, 0), c.get(loss, 0), c.get(tie, 0) if tie else 0) for c in per_unit)
    return win_tie_loss(patterns, rule="all")


def shares_of_rows(rows: np.ndarray, votes: int = 0, level: float = 0.95) -> Shares:
    """Win / tie / loss shares as the mean of one share vector per comparison (rows of [win, tie,
    loss] summing to 1, e.g. each comparison's votes weighted by their annotators' reliability),
    with intervals treating comparisons as the unit, as ``win_tie_loss`` does."""
    rows = np.asarray(rows, dtype=float).reshape(-1, 3)
    if not len(rows):
        return Shares(0, votes, 0.0, 0.0, 0.0)
    return _shares(rows, np.ones(len(rows)), votes, level)


def combine_orders(first: str, second: str, policy: str) -> str | None:
    """The judge's two orders: agreeing -> that outcome; disagreeing -> tie or dropped; one
    failed order -> the other; both failed -> nothing. A failure is never a tie."""
    outcomes = [o for o in (first, second) if o]
    if not outcomes:
        return None
    if len(outcomes) == 1 or outcomes[0] == outcomes[1]:
        return outcomes[0]
    return TIE if policy == "tie" else None


def tie_discounted_from_patterns(patterns: Mapping[Pattern, int]) -> tuple[float | None, int]:
    """The paper's tie-discounted accuracy over all pairs of annotators on the same comparison,
    from vote patterns alone: agreeing pairs score 1, pairs where exactly one says tie 0.5."""
    score = pairs = 0.0
    for (c, b, t), count in patterns.items():
        n = c + b + t
        if n < 2:
            continue
        p = n * (n - 1) / 2
        agree = (c * (c - 1) + b * (b - 1) + t * (t - 1)) / 2
        half = t * (c + b)
        score += count * (agree + 0.5 * half)
        pairs += count * p
    return (score / pairs if pairs else None), int(pairs)


def fleiss_from_patterns(patterns: Mapping[Pattern, int]) -> float | None:
    """Fleiss' kappa from vote patterns (items with two or more votes)."""
    per_item = totals = 0.0
    items = 0
    cat = np.zeros(3)
    for (c, b, t), count in patterns.items():
        n = c + b + t
        if n < 2:
            continue
        per_item += count * (c * (c - 1) + b * (b - 1) + t * (t - 1)) / (n * (n - 1))
        items += count
        cat += count * np.array([c, b, t])
        totals += count * n
    if not items:
        return None
    p_bar = per_item / items
    p_e = float(((cat / totals) ** 2).sum())
    return None if p_e == 1 else (p_bar - p_e) / (1 - p_e)


JudgePattern = tuple[int, int, int, str]  # a comparison's people's votes (as Pattern) and the judge's outcome


def judge_kappa_from_patterns(patterns: Mapping[JudgePattern, int]) -> float | None:
    """Cohen's kappa between each person's vote and the judge's outcome on the same comparison
    (every vote a pair with the judge), from (candidate, baseline, tie votes, judge outcome) counts."""
    confusion: Counter = Counter()
    for (c, b, t, judge), count in patterns.items():
        for human, votes in ((WIN, c), (LOSS, b), (TIE, t)):
            confusion[(human, judge)] += votes * count
    labels = [WIN, TIE, LOSS]
    total = sum(confusion.values())
    if not total:
        return None
    observed = sum(confusion[(x, x)] for x in labels) / total
    expected = (
        sum(sum(confusion[(x, y)] for y in labels) * sum(confusion[(y, x)] for y in labels) for x in labels) / total**2
    )
    return (observed - expected) / (1 - expected) if expected < 1 else None


def cluster_bootstrap(
    statistic: Callable[[Mapping[K, int]], float | None],
    counts: Mapping[K, int],
    draws: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float] | None:
    """A percentile interval for ``statistic`` over comparisons resampled with replacement, the
    comparisons given as counts per kind (their vote pattern, with the judge's outcome): each draw
    is a multinomial of the same total over the kinds, so the votes of one comparison move together
    (they are not independent pairs). Seeded: the same rows give the same interval. None under two
    comparisons, or when the statistic is undefined in more than 5% of the draws."""
    drawn = _resampled(counts, draws, seed)
    if drawn is None:
        return None
    keys, samples = drawn
    values = [statistic({k: int(c) for k, c in zip(keys, sample, strict=True) if c}) for sample in samples]
    return _percentiles(np.array([np.nan if v is None else v for v in values], dtype=float), draws, level)


def _resampled(counts: Mapping[K, int], draws: int, seed: int) -> tuple[list[K], np.ndarray] | None:
    """The kinds, and ``draws`` multinomial resamples of the comparisons' counts per kind."""
    keys = list(counts)
    n = sum(counts.values())
    if n < 2:
        return None
    p = np.array([counts[k] for k in keys], dtype=float) / n
    return keys, np.random.default_rng(seed).multinomial(n, p, size=draws)


def _percentiles(values: np.ndarray, draws: int, level: float) -> tuple[float, float] | None:
    values = values[np.isfinite(values)]
    if len(values) < 0.95 * draws:
        return None
    low, high = np.quantile(values, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


def fleiss_interval(
    patterns: Mapping[Pattern, int], draws: int = 2000, level: float = 0.95, seed: int = 0
) -> tuple[float, float] | None:
    """cluster_bootstrap(fleiss_from_patterns, ...), the draws computed at once (numpy): the
    dashboard shows it on every load."""
    drawn = _resampled({k: n for k, n in patterns.items() if sum(k) >= 2}, draws, seed)
    if drawn is None:
        return None
    keys, samples = drawn
    votes = np.array(keys, dtype=float)  # kinds x (candidate, baseline, tie)
    per_kind = votes.sum(1)
    agreement = (votes * (votes - 1)).sum(1) / (per_kind * (per_kind - 1))
    items = samples.sum(1)
    p_bar = samples @ agreement / items
    shares = (samples @ votes) / (samples @ per_kind)[:, None]
    p_e = (shares**2).sum(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        kappa = np.where(p_e < 1, (p_bar - p_e) / (1 - p_e), np.nan)
    return _percentiles(kappa, draws, level)


def judge_kappa_interval(
    patterns: Mapping[JudgePattern, int], draws: int = 2000, level: float = 0.95, seed: int = 0
) -> tuple[float, float] | None:
    """cluster_bootstrap(judge_kappa_from_patterns, ...), the draws computed at once (numpy)."""
    drawn = _resampled(patterns, draws, seed)
    if drawn is None:
        return None
    keys, samples = drawn
    labels = [WIN, TIE, LOSS]
    cells = np.zeros((len(keys), 9))  # each kind's votes in the (person, judge) confusion, flattened
    for row, (c, b, t, judge) in enumerate(keys):
        for human, votes in ((WIN, c), (LOSS, b), (TIE, t)):
            cells[row, labels.index(human) * 3 + labels.index(judge)] += votes
    confusion = (samples @ cells).reshape(-1, 3, 3)
    total = confusion.sum((1, 2))
    observed = np.trace(confusion, axis1=1, axis2=2) / total
    expected = (confusion.sum(2) * confusion.sum(1)).sum(1) / total**2
    with np.errstate(divide="ignore", invalid="ignore"):
        kappa = np.where((total > 0) & (expected < 1), (observed - expected) / (1 - expected), np.nan)
    return _percentiles(kappa, draws, level)


def bradley_terry(wins: Mapping[tuple[str, str], float], iterations: int = 500, tol: float = 1e-10) -> dict[str, float]:
    """Bradley-Terry strengths (log scale, mean 0) from wins[(i, j)] = times i beat j (a tie
    counts half to each side), fitted by the MM algorithm (Hunter, 2004)."""
    names = sorted({x for pair in wins for x in pair})
    if len(names) < 2:
        return dict.fromkeys(names, 0.0)
    index = {n: k for k, n in enumerate(names)}
    w = np.zeros((len(names), len(names)))
    for (i, j), count in wins.items():
        w[index[i], index[j]] += count
    games = w + w.T
    total_wins = w.sum(axis=1) + 1e-3  # a tiny prior keeps a system that never wins finite
    p = np.ones(len(names))
    for _ in range(iterations):
        denom = (games / (p[:, None] + p[None, :])).sum(axis=1)
        new = total_wins / np.maximum(denom, 1e-12)
        new /= np.exp(np.log(new).mean())
        if np.max(np.abs(new - p)) < tol:
            p = new
            break
        p = new
    logs = np.log(p)
    return {n: float(logs[index[n]] - logs.mean()) for n in names}


def bradley_terry_intervals(
    outcomes: Sequence[tuple[str, str, str]], bootstrap: int = 300, seed: int = 0, level: float = 0.95
) -> dict[str, tuple[float, float, float]]:
    """(strength, low, high) per system from (system a, system b, outcome for a: win/loss/tie)
    rows, one per comparison; the bootstrap resamples comparisons."""
    cells: dict[tuple[str, str, str], int] = {}
    for row in outcomes:
        cells[row] = cells.get(row, 0) + 1
    return bradley_terry_from_counts(cells, bootstrap=bootstrap, seed=seed, level=level)


def bradley_terry_from_counts(
    cells: Mapping[tuple[str, str, str], int], bootstrap: int = 200, seed: int = 0, level: float = 0.95
) -> dict[str, tuple[float, float, float]]:
    """(strength, low, high) per system from cells[(a, b, outcome for a)] = number of comparisons
    (outcome "win", "loss" or "tie"). The bootstrap resamples comparisons: a multinomial draw over
    the cells, so its cost does not grow with the number of comparisons."""
    keys = [k for k, n in cells.items() if n > 0]
    counts = np.array([cells[k] for k in keys], dtype=float)

    def fit(weights) -> dict[str, float]:
        wins: dict[tuple[str, str], float] = {}
        for (a, b, outcome), w in zip(keys, weights, strict=True):
            if outcome == "win":
                wins[(a, b)] = wins.get((a, b), 0) + w
            elif outcome == "loss":
                wins[(b, a)] = wins.get((b, a), 0) + w
            else:
                wins[(a, b)] = wins.get((a, b), 0) + w / 2
                wins[(b, a)] = wins.get((b, a), 0) + w / 2
        return bradley_terry(wins, iterations=300)

    if not keys:
        return {}
    point = fit(counts)
    total = int(counts.sum())
    samples: dict[str, list[float]] = {n: [] for n in point}
    if bootstrap and total > 1:
        rng = np.random.default_rng(seed)
        for draw in rng.multinomial(total, counts / total, size=bootstrap):
            for name, value in fit(draw).items():
                samples[name].append(value)
    lo, hi = (1 - level) / 2 * 100, (1 + level) / 2 * 100
    result: dict[str, tuple[float, float, float]] = {}
    for name, value in point.items():
        if samples[name]:
            low, high = np.percentile(samples[name], [lo, hi])
            result[name] = (value, float(low), float(high))
        else:
            result[name] = (value, value, value)
    return result
