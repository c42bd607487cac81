"""Ranking many systems from pairwise votes, people's and a judge's together, with rank-sets that
cover the true ranks at every look. Plain numpy.

The estimand: for each pair of systems (i, j), p_ij, the chance that a person prefers i's answer
to j's over the pair's prompts (a tie is half a win), and the Bradley-Terry strengths theta that
best fit them (logit p_ij = theta_i - theta_j; mean strength 0). The people's votes on a pair are
on prompts drawn at random from the pair's prompts; the judge has judged (ideally) every prompt of
every pair it could afford, both orders, counted as one verdict.

1. Per pair, the people's share with the judge's help (PPI++ for a mean, the judge's mean over
   the pair's every judged prompt known: Angelopoulos, Duchi and Zrnic 2023): lam * mean(f over
   the pair) + mean(y - lam f over the people's votes), unbiased whatever the judge; lam = 0 gives
   the people alone. One lam for all pairs: the one in [0, 1] that makes the strengths below
   most precise (PPI++'s power tuning, aimed at the ranking rather than at one mean). Working
   pair by pair keeps every estimate unbiased however unevenly the votes were spread over the
   pairs (active sampling chooses pairs, never prompts): what "AutoEval done right" (Boyeau et
   al., ICML 2025) needs of its labelled sample.
2. Bradley-Terry from the pairs' estimates: weighted least squares of logit(p_ij) on
   theta_i - theta_j, each weighted by its estimate's precision on the logit scale (the delta
   method), with the covariance of theta.
3. Rank-sets (Chatzi et al., NeurIPS 2024: a system's rank-set is every rank it could hold given
   the pairs whose order is known): i's set runs from 1 + the systems surely stronger than i to
   K - the systems surely weaker, "surely" meaning theta_i - theta_j's interval excludes 0. The
   intervals hold for every pair at once (Bonferroni over the K(K-1)/2 pairs) and at every look
   (the asymptotic confidence sequence of Waudby-Smith, Arbour, Sinha, Kennedy and Ramdas 2024,
   "Time-uniform central limit theory", eq. 2: its boundary at n votes in place of the normal
   quantile, tuned for a planned number of votes); so all the true ranks lie in their sets, at
   every look, with probability at least 1 - alpha (asymptotically). bench/ranking.py measures it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from stats.evidence import logistic_fit

Votes = np.ndarray


@dataclass(frozen=True)
class PairShares:
    """Per pair (i < j): the estimated chance that i is preferred, its variance, the people's
    votes on it and the judge's verdicts; ``lam`` the judge's weight (0: people alone)."""

    first: np.ndarray
    second: np.ndarray
    share: np.ndarray
    variance: np.ndarray
    people: np.ndarray
    judged: np.ndarray
    lam: float


def oriented(first, second, values) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each battle written with the lower-numbered system first (its value flipped to 1 - v)."""
    a, b, v = np.asarray(first, dtype=int), np.asarray(second, dtype=int), np.asarray(values, dtype=float)
    swap = a > b
    return np.where(swap, b, a), np.where(swap, a, b), np.where(swap, 1.0 - v, v)


def pair_shares(
    k: int,
    people: tuple[Votes, Votes, Votes, Votes],
    judge: tuple[Votes, Votes, Votes] | None = None,
    lam: float | None = None,
) -> PairShares:
    """The pairs' shares from ``people`` = (first, second, y, f): each vote's systems, the person's
    outcome for ``first`` (1, 0.5, 0) and the judge's on the same battle (its mean over the two
    orders, in [0, 1]; ignored without ``judge``), and ``judge`` = (first, second, f) over every
    battle the judge judged (the people's included). Without ``judge``, or with ``lam`` 0: the
    people's shares alone. Pairs without two people's votes are left out.

    ``lam`` None with a judge: the weight that makes the Bradley-Terry strengths most precise (the
    smallest total variance of theta, over a grid of weights in [0, 1] and PPI++'s pooled one),
    so that the judge is given no weight where it would make the ranking less precise: a pair all
    one way has almost no spread in the people's votes, and the judge's noise added to it would
    widen it. Every weight gives an unbiased share; choosing it from the same votes is PPI++'s
    practice (asymptotically the chosen weight's variance holds)."""
    parts = _Parts(k, people, judge)
    if judge is None:
        return parts.at(0.0)
    if lam is not None:
        return parts.at(lam)
    grid = sorted({*np.linspace(0.0, 1.0, 21).tolist(), parts.pooled_lam()})
    best, best_spread = parts.at(0.0), math.inf
    for value in grid:
        shares = parts.at(value)
        strengths = bradley_terry_from_shares(k, shares)
        spread = float(np.trace(strengths.cov)) if strengths.connected else math.inf
        if spread < best_spread:
            best, best_spread = shares, spread
    return best


class _Parts:
    """A pair_shares call's per-pair sums, from which the shares at any weight follow."""

    def __init__(self, k: int, people, judge) -> None:
        self.k = k
        a, b, y = oriented(people[0], people[1], people[2])
        _, _, f = oriented(people[0], people[1], people[3]) if judge is not None else (a, b, np.zeros(len(a)))
        self.pair, self.y, self.f = a * k + b, y, f
        size = k * k
        self.n = np.bincount(self.pair, minlength=size).astype(float)
        keep = np.flatnonzero(self.n >= 2)
        self.judge = judge
        if judge is not None:
            ja, jb, jf = oriented(*judge)
            self.jpair, self.jf = ja * k + jb, jf
            self.judged = np.bincount(self.jpair, minlength=size).astype(float)
            self.f_all = np.bincount(self.jpair, weights=jf, minlength=size) / np.maximum(self.judged, 1)
            keep = keep[self.judged[keep] >= 2]
            self.jf_var = np.bincount(
                self.jpair, weights=(jf - self.f_all[self.jpair]) ** 2, minlength=size
            ) / np.maximum(self.judged - 1, 1)
        else:
            self.judged = np.zeros(size)
            self.f_all = np.zeros(size)
        self.keep = keep

    def mean(self, values) -> np.ndarray:
        return np.bincount(self.pair, weights=values, minlength=self.k * self.k) / np.maximum(self.n, 1)

    def pooled_lam(self) -> float:
        y_c = self.y - self.mean(self.y)[self.pair]
        f_c = self.f - self.mean(self.f)[self.pair]
        return _power_tuning(self.pair, y_c, f_c, self.n, self.judged, self.keep)

    def at(self, lam: float) -> PairShares:
        n, keep, size = self.n, self.keep, self.k * self.k
        rect = self.y - lam * self.f
        rect_mean = self.mean(rect)
        rect_var = np.bincount(self.pair, weights=(rect - rect_mean[self.pair]) ** 2, minlength=size) / np.maximum(
            n - 1, 1
        )
        share = lam * self.f_all + rect_mean
        variance = rect_var / np.maximum(n, 1)
        if self.judge is not None and lam:
            variance = variance + lam**2 * self.jf_var / np.maximum(self.judged, 1)
        # a pair whose votes all agree has no spread: the variance of a share that near the edge
        floor = 1.0 / (np.maximum(n, 1) * (np.maximum(n, 1) + 2))
        variance = np.maximum(variance, floor)
        return PairShares(
            keep // self.k,
            keep % self.k,
            share[keep],
            variance[keep],
            n[keep].astype(int),
            self.judged[keep].astype(int),
            float(lam),
        )


def _power_tuning(pair, y_c, f_c, n, judged, keep) -> float:
    """PPI++'s weight pooled over the pairs, from the within-pair moments pooled as one sample
    (each pair's centred sums, so a pair weighs by its votes): sum of within-pair sums of
    (y - mean)(f - mean) over sum of (1 + n / N) (f - mean)^2, clipped to [0, 1]. Weighting each pair
    by its share's variance instead (1 / n) let the pairs with two or three votes, whose covariances
    are mostly noise, set the weight: 0.01 in a study where the judge agreed with the people."""
    mask = np.isin(pair, keep)
    if not mask.any():
        return 0.0
    p = pair[mask]
    cov = np.bincount(p, weights=y_c[mask] * f_c[mask], minlength=len(n))
    var = np.bincount(p, weights=f_c[mask] ** 2, minlength=len(n))
    nk, big = n[keep], np.maximum(judged[keep], 1)
    top = float(np.sum(cov[keep]))
    bottom = float(np.sum((1 + nk / big) * var[keep]))
    return min(max(top / bottom, 0.0), 1.0) if bottom > 0 else 0.0


@dataclass(frozen=True)
class Strengths:
    theta: np.ndarray  # mean 0
    cov: np.ndarray
    connected: bool  # whether the pairs with estimates join every system


def bradley_terry_from_shares(k: int, shares: PairShares) -> Strengths:
    """Bradley-Terry strengths by weighted least squares of the pairs' logits. A share is kept
    inside [1/(n+2), 1 - 1/(n+2)] (where one pseudo-vote each way would put a pair all one way), so
    that such a pair stays finite and its logit's delta-method variance stays near 1 while the
    logit grows as log(n + 1): n unanimous votes do settle a pair. Clipped nearer the edge
    (0.5/(n+1)), that variance stayed near 4 however many votes came, and no unanimous pair could
    ever be told apart."""
    if not len(shares.share):
        return Strengths(np.zeros(k), np.full((k, k), np.inf), False)
    n = shares.people
    p = np.clip(shares.share, 1 / (n + 2), 1 - 1 / (n + 2))
    logit = np.log(p / (1 - p))
    weight = (p * (1 - p)) ** 2 / shares.variance  # 1 / Var(logit p) by the delta method
    x = np.zeros((len(p), k))
    x[np.arange(len(p)), shares.first] = 1.0
    x[np.arange(len(p)), shares.second] = -1.0
    # identifiable with the mean strength 0: solve in the k - 1 contrasts to the last system
    contrast = np.vstack([np.eye(k - 1), -np.ones((1, k - 1))])  # theta = C beta, sum(theta) = 0
    z = x @ contrast
    information = z.T @ (z * weight[:, None])
    if np.linalg.matrix_rank(information) < k - 1:
        return Strengths(np.zeros(k), np.full((k, k), np.inf), False)
    beta_cov = np.linalg.inv(information)
    beta = beta_cov @ (z.T @ (weight * logit))
    return Strengths(contrast @ beta, contrast @ beta_cov @ contrast.T, True)


def cs_multiplier(n: int, alpha: float, planned_n: int) -> float:
    """What replaces the normal quantile in an interval that must hold at every n (the
    asymptotic confidence sequence's boundary, Waudby-Smith et al. 2024, eq. 2, with rho tuned to
    be narrowest near ``planned_n`` votes): sqrt(2 (n rho^2 + 1) / (n rho^2) log(sqrt(n rho^2 + 1) / alpha))."""
    n = max(int(n), 1)
    rho2 = (-2 * math.log(alpha) + math.log(-2 * math.log(alpha) + 1)) / max(planned_n, 1)
    return math.sqrt(2 * (n * rho2 + 1) / (n * rho2) * math.log(math.sqrt(n * rho2 + 1) / alpha))


@dataclass(frozen=True)
class RankSets:
    low: np.ndarray  # best rank each system may hold (1 = strongest)
    high: np.ndarray  # its worst
    stronger: np.ndarray  # stronger[i, j]: i surely stronger than j

    def settled_top(self) -> int | None:
        """The system whose rank-set is {1}, if one is."""
        top = np.flatnonzero(self.high == 1)
        return int(top[0]) if len(top) else None

    def covers(self, true_theta: np.ndarray) -> bool:
        """Whether every system's true rank lies in its set (a tie in truth may take either rank)."""
        order = np.argsort(-np.asarray(true_theta), kind="stable")
        ranks = np.empty(len(order), dtype=int)
        ranks[order] = np.arange(1, len(order) + 1)
        return bool(np.all((ranks >= self.low) & (ranks <= self.high)))


def rank_sets(strengths: Strengths, n: int, alpha: float = 0.05, planned_n: int = 2000) -> RankSets:
    """Each system's rank-set from intervals on every difference theta_i - theta_j that hold for
    all pairs at once (Bonferroni) and at every look (cs_multiplier at ``n`` votes)."""
    k = len(strengths.theta)
    if not strengths.connected:
        return RankSets(np.ones(k, dtype=int), np.full(k, k), np.zeros((k, k), dtype=bool))
    pairs = k * (k - 1) // 2
    c = cs_multiplier(n, alpha / pairs, planned_n)
    d = strengths.theta[:, None] - strengths.theta[None, :]
    var = np.diag(strengths.cov)[:, None] + np.diag(strengths.cov)[None, :] - 2 * strengths.cov
    se = np.sqrt(np.maximum(var, 0.0))
    stronger = d - c * se > 0
    np.fill_diagonal(stronger, False)
    low = 1 + stronger.sum(axis=0)  # the systems surely stronger than each
    high = k - stronger.sum(axis=1)  # minus those surely weaker
    return RankSets(low.astype(int), high.astype(int), stronger)


STYLE_MIN_SPREAD = 0.02  # a style feature that hardly varies cannot be told from the systems themselves


@dataclass(frozen=True)
class StyleControlled:
    """Strengths with the answers' style held equal, and what style itself moves: per feature
    fitted, its coefficient per unit of normalised difference ((a - b) / (a + b)) and its standard
    error; the features that hardly varied are left out."""

    strengths: Strengths
    features: tuple[str, ...]
    coefficients: np.ndarray
    se: np.ndarray


def style_controlled_strengths(
    k: int, first: Votes, second: Votes, y: Votes, differences: np.ndarray, names: tuple[str, ...]
) -> StyleControlled:
    """Chatbot Arena's style control on a ranking (Li, Chiang, Dunlap et al., "Does style matter?",
    LMSYS 2024; lmarena/arena-rank's ContextualBradleyTerry): one logistic regression over the
    battles, logit P(first preferred) = theta_first - theta_second + sum_f g_f z_f, where z_f is
    the normalised difference of style feature f between the first's answer and the second's
    (``differences``, one column per name), scaled by its root mean square; ``y`` 1, 0.5 (a tie,
    or "both are bad"), 0. The strengths (mean 0) are each system's with every style difference
    zero. Their covariance is the sandwich (robust) one, as arena-rank's: H^-1 G H^-1 with H the
    Fisher information and G the outer product of the battles' scores, so fractional ties and a
    misspecified link still get honest variances.

    Unlike arena-rank the features are scaled but not centred: centring would move "no style
    difference" to the mean difference, which depends on which system of each pair is written
    first."""
    a, b, v = oriented(first, second, y)
    z = np.asarray(differences, dtype=float).reshape(len(v), len(names))
    z = np.where((np.asarray(first) > np.asarray(second))[:, None], -z, z)  # oriented as the battle
    rms = np.sqrt(np.mean(z**2, axis=0)) if len(v) else np.zeros(len(names))
    kept = np.flatnonzero(rms >= STYLE_MIN_SPREAD)
    scaled = z[:, kept] / rms[kept]
    contrast = np.vstack([np.eye(k - 1), -np.ones((1, k - 1))])
    x_sys = np.zeros((len(v), k))
    x_sys[np.arange(len(v)), a] = 1.0
    x_sys[np.arange(len(v)), b] = -1.0
    x = np.column_stack([x_sys @ contrast, scaled])
    unknown = StyleControlled(Strengths(np.zeros(k), np.full((k, k), np.inf), False), (), np.zeros(0), np.zeros(0))
    if len(v) < x.shape[1] + 2:
        return unknown
    beta = logistic_fit(x, v)
    p = 1 / (1 + np.exp(-(x @ beta)))
    information = (x * (p * (1 - p))[:, None]).T @ x
    if np.linalg.matrix_rank(information) < x.shape[1]:
        return unknown
    bread = np.linalg.inv(information)
    scores = x * (v - p)[:, None]
    cov = bread @ (scores.T @ scores) @ bread
    s = k - 1
    theta = contrast @ beta[:s]
    strengths = Strengths(theta, contrast @ cov[:s, :s] @ contrast.T, True)
    scale = rms[kept]
    return StyleControlled(
        strengths,
        tuple(names[i] for i in kept),
        beta[s:] / scale,
        np.sqrt(np.maximum(np.diag(cov)[s:], 0.0)) / scale,
    )
