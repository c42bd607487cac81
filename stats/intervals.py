"""Intervals for shares and means that hold at any sample size, plain numpy and scipy.

- ``clopper_pearson``: the exact binomial interval (Clopper and Pearson, Biometrika 26, 1934): its
  coverage is at least the stated level for every n and every true share, so it never shows
  "100% [100, 100]" from 29 safe answers of 30. statsmodels calls it ``proportion_confint(...,
  method="beta")``; tests/test_stats_intervals.py checks ours against it.
- ``korn_graubard``: the same interval at an effective sample size, for a share estimated from
  clustered labels (three people per comparison, five judge samples per prompt) or by an estimator
  with its own variance (prediction-powered inference): n* = p (1 - p) / Var(p), capped at the
  labels there are, with Korn and Graubard's degrees-of-freedom correction ("Confidence intervals
  for proportions with small expected number of positive counts estimated from survey data",
  Survey Methodology 24, 1998; the rule the US National Center for Health Statistics publishes
  proportions by, Parker et al. 2017).
- ``betting_cs``: a confidence sequence for the mean of bounded values, valid at every n at once in
  finite samples, so a study may be looked at after every vote and stopped the first time it is
  narrow enough: the hedged capital process of Waudby-Smith and Ramdas, "Estimating means of bounded
  random variables by betting", JRSSB 86 (2024), Section 4, with their predictable plug-in bets
  (Section 5), exactly as the reference implementation ``confseq.betting.hedged_cs`` computes it
  (tests/test_stats_intervals.py checks ours against numbers produced by confseq 0.0.11, which does
  not build on this project's Python and NumPy: tests/data/confseq_reference.py says how they were
  made). Values in any known range [lower, upper] are rescaled to [0, 1].
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import beta as beta_dist
from scipy.stats import norm
from scipy.stats import t as t_dist

Values = Sequence[float] | np.ndarray  # numbers, as a list or an array


def clopper_pearson(successes: float, n: float, level: float = 0.95) -> tuple[float, float]:
    """The exact binomial interval for a share of ``successes`` out of ``n``; fractional counts
    (an effective sample size) are allowed. (0, 1) when n is 0."""
    if n <= 0:
        return 0.0, 1.0
    x = min(max(float(successes), 0.0), float(n))
    alpha = 1 - level
    low = float(beta_dist.ppf(alpha / 2, x, n - x + 1)) if x > 0 else 0.0
    high = float(beta_dist.ppf(1 - alpha / 2, x + 1, n - x)) if x < n else 1.0
    return low, high


def effective_n(share: float, variance: float, cap: float, df: float | None = None, level: float = 0.95) -> float:
    """Korn and Graubard's effective sample size of a share estimated with ``variance``: the n at
    which a simple random sample would give that variance, p (1 - p) / Var, times (z / t_df)^2 when
    the variance has ``df`` degrees of freedom, capped at ``cap`` (the labels there are). A share of
    0 or 1, or a zero variance, says nothing of the spread: then the cap itself."""
    if variance <= 0 or share <= 0 or share >= 1:
        return float(cap)
    n = share * (1 - share) / variance
    if df is not None and df >= 1:
        z = norm.ppf(0.5 + level / 2)
        n *= (z / t_dist.ppf(0.5 + level / 2, df)) ** 2
    return float(min(n, cap))


def korn_graubard(share: float, variance: float, cap: float, df: float | None = None, level: float = 0.95):
    """(low, high, effective n): Clopper-Pearson at the effective sample size (see effective_n)."""
    share = min(max(share, 0.0), 1.0)
    n = effective_n(share, variance, cap, df, level)
    low, high = clopper_pearson(share * n, n, level)
    return low, high, n


def share_interval(
    successes: Values,
    labels: Values,
    counts: Values | None = None,
    level: float = 0.95,
) -> tuple[float, float, float]:
    """(low, high, effective n) for the share sum(successes) / sum(labels) over units (comparisons,
    prompts, responses) that each hold ``labels[i]`` labels of which ``successes[i]`` are the one
    counted (fractions allowed, e.g. reliability-weighted votes); ``counts[i]`` units alike (vote
    patterns), 1 each if not given. Every unit one whole label: the exact Clopper-Pearson interval.
    Otherwise Korn-Graubard with the ratio estimator's variance (the units resampled, as a cluster
    bootstrap would, with n / (n - 1); regularised, see below) and n - 1 degrees of freedom."""
    y = np.asarray(successes, dtype=float)
    m = np.asarray(labels, dtype=float)
    w = np.ones(len(y)) if counts is None else np.asarray(counts, dtype=float)
    n = float(w.sum())
    total = float((w * m).sum())
    if n <= 0 or total <= 0:
        return 0.0, 1.0, 0.0
    hits = float((w * y).sum())
    share = hits / total
    if bool(np.all(m == 1) and np.all((y == 0) | (y == 1))):
        low, high = clopper_pearson(hits, n, level)
        return low, high, n
    if n < 2:
        return 0.0, 1.0, 0.0
    # the ratio estimator's variance, with two units of the mean size added to it, one all
    # successes and one none (Agresti and Coull's add-two, by units): without them a sample that
    # happens to hold a single success has almost no spread, and at 2% over 100 prompts of three
    # votes the interval covered 0.93 of the time; with them 0.95 (bench/evidence.py)
    size = total / n
    spread = float((w * (y - share * m) ** 2).sum()) + (size - share * size) ** 2 + (share * size) ** 2
    variance = n / (n - 1) * spread / total**2
    return korn_graubard(share, variance, total, df=n - 1, level=level)


# -- anytime-valid: betting confidence sequences --------------------------------------------------


def predictable_bets(x: np.ndarray, alpha: float, planned_n: int | None = None) -> np.ndarray:
    """The predictable plug-in bets of Waudby-Smith and Ramdas (2024, eq. 26; confseq's
    ``lambda_predmix_eb`` with its defaults): sqrt(2 log(1/alpha) / (sigma2_{t-1} t log(1 + t))),
    with the running variance regularised by one fake observation of mean 1/2 and variance 1/4;
    with ``planned_n``, sqrt(2 log(1/alpha) / (planned_n sigma2_{t-1})): tightest near that n and
    valid at every n all the same (any predictable bet is)."""
    t = np.arange(1, len(x) + 1, dtype=float)
    mean = np.minimum((0.5 + np.cumsum(x)) / (t + 1), 1.0)
    variance = (0.25 + np.cumsum((x - mean) ** 2)) / (t + 1)
    previous = np.concatenate(([0.25], variance[:-1]))
    if planned_n is None:
        bets = np.sqrt(2 * math.log(1 / alpha) / (t * np.log(1 + t) * previous))
    else:
        bets = np.sqrt(2 * math.log(1 / alpha) / (planned_n * previous))
    return np.nan_to_num(bets, nan=0.0)


@dataclass(frozen=True)
class Sequence01:
    """A confidence sequence's bounds after each value (running intersection: what any look at
    any time may report)."""

    low: np.ndarray
    high: np.ndarray

    def at(self, n: int) -> tuple[float, float]:
        """The bounds after ``n`` values (n >= 1); (0, 1) before any."""
        if n <= 0:
            return 0.0, 1.0
        return float(self.low[n - 1]), float(self.high[n - 1])


def betting_cs(
    values: Values,
    lower: float = 0.0,
    upper: float = 1.0,
    alpha: float = 0.05,
    planned_n: int | None = None,
    breaks: int = 1000,
) -> Sequence01:
    """Bounds on the mean of values known to lie in [lower, upper], after each value, valid at
    every n at once with probability 1 - alpha whatever the stopping rule, for values drawn
    independently with one mean (with replacement; drawing without replacement from a finite set is
    only more concentrated). The hedged capital process (theta = 1/2, bets truncated at half the
    distance to the bound) on a grid of ``breaks`` + 1 candidate means, as confseq's
    ``hedged_cs(..., running_intersection=True)``; ``planned_n`` tunes the bets (see
    predictable_bets).

    A candidate mean outside the running intersection never comes back into it, so the capital is
    carried on for the candidates still inside only, a block of values at a time (blocks of 32
    doubling to 4,096): the work grows as the interval's width summed over the values, about
    sqrt(n) grid rows per value instead of all of them."""
    if upper <= lower:
        raise ValueError(f"the range [{lower}, {upper}] is empty")
    width = upper - lower
    x = (np.asarray(values, dtype=float) - lower) / width
    if len(x) and (x.min() < -1e-9 or x.max() > 1 + 1e-9):
        raise ValueError(f"values outside their stated range [{lower}, {upper}]")
    x = np.clip(x, 0.0, 1.0)
    unknown = bool(np.isnan(x).any())
    n = len(x)
    grid = np.linspace(0.0, 1.0, breaks + 1)
    bets = predictable_bets(x, alpha / 2, planned_n)
    threshold = math.log(1 / alpha)
    log_up = np.zeros(breaks + 1)
    log_down = np.zeros(breaks + 1)
    first, last = 0, breaks  # the running intersection, as grid indices
    low_index = np.zeros(n, dtype=int)
    high_index = np.full(n, breaks)
    start, block = 0, 32
    while start < n:
        stop = min(start + block, n)
        rows = slice(first, last + 1)
        m = grid[rows, None]
        part, bet = x[None, start:stop], bets[None, start:stop]
        with np.errstate(invalid="ignore", divide="ignore"):
            # the bet against a mean above m may lose at most half the capital, and below it too
            # (a bet of at most 1/2 over the distance: log1p's argument stays above -1/2)
            gap = part - m
            up = np.log1p(np.minimum(bet, 0.5 / m) * gap)
            down = np.log1p(-np.minimum(bet, 0.5 / (1 - m)) * gap)
        if unknown:  # a NaN value adds nothing to any capital
            up[np.isnan(up)], down[np.isnan(down)] = 0.0, 0.0
        up = np.cumsum(up, axis=1, out=up)  # in place: the block's arrays are the work's memory
        down = np.cumsum(down, axis=1, out=down)
        up += log_up[rows, None]
        down += log_down[rows, None]
        log_up[rows], log_down[rows] = up[:, -1], down[:, -1]
        inside = np.maximum(up, down, out=up) <= threshold - math.log(0.5)
        anywhere = inside.any(axis=0)
        # confseq's convention: a time with no candidate inside says nothing (0 to 1)
        lows = np.where(anywhere, first + np.argmax(inside, axis=0), 0)
        highs = np.where(anywhere, last - np.argmax(inside[::-1], axis=0), breaks)
        lows = np.maximum.accumulate(np.maximum(lows, first))
        highs = np.minimum.accumulate(np.minimum(highs, last))
        low_index[start:stop], high_index[start:stop] = lows, highs
        first, last = int(lows[-1]), int(highs[-1])
        if first > last:  # the sequence crossed (a miss of probability below alpha): nothing to carry
            low_index[stop:], high_index[stop:] = first, last
            break
        start, block = stop, min(block * 2, 4096)
    low = np.maximum(0.0, grid[low_index] - 1 / breaks)
    high = np.minimum(1.0, grid[high_index] + 1 / breaks)
    return Sequence01(lower + width * low, lower + width * high)
