"""Evidence from fewer human votes: the judge's verdict on every comparison and people's votes on
some of them, combined into estimates of the people's shares that stay unbiased whatever the
judge's quality; intervals that may be looked at after every vote; and win rates controlled for
answer length. Plain numpy.

- Prediction-powered inference: Angelopoulos, Bates, Fannjiang, Jordan, Zrnic, "Prediction-powered
  inference", Science 382 (2023). With power tuning (the weight ``lam`` on the judge, chosen from the
  data so that a poor judge costs nothing): Angelopoulos, Duchi, Zrnic, "PPI++: Efficient
  prediction-powered inference", arXiv:2311.01453 (2023), eq. (5)-(6). For LLM evaluation: Boyeau,
  Angelopoulos, Yosef, Malik, Jordan, "AutoEval done right", arXiv:2403.07008 (2024).
- Votes placed where the judge is least sure, reweighted so the estimate stays unbiased: Zrnic and
  Candes, "Active statistical inference", ICML 2024 (sampling probabilities proportional to the
  square root of the expected squared error of the prediction, section 4).
- Intervals at one look hold at any n (stats/intervals.py): the estimators' variances turned into
  an effective sample size and an exact binomial interval at it (Korn and Graubard 1998), never the
  normal interval, which collapses at small n and extreme shares.
- Confidence sequences, valid at every look in finite samples: betting (Waudby-Smith and Ramdas,
  "Estimating means of bounded random variables by betting", JRSSB 86, 2024; stats.intervals.
  betting_cs), on the people's values or on the judge-assisted and sampled terms, which are bounded
  once the judge's weight is chosen from earlier values only (predictable) and lies in [0, 1]. The
  asymptotic sequence used before (Waudby-Smith et al., Annals of Statistics 2024) missed 19-25% of
  the time in studies of 20 comparisons.
- Length control: Dubois, Galambosi, Liang, Hashimoto, "Length-controlled AlpacaEval",
  arXiv:2404.04475 (2024): a logistic model of the verdict with the length difference as a
  covariate; the controlled win rate is its prediction at no length difference.

Written here rather than taken from ppi-python (which installs here): the estimators are a few
lines each, checked in tests/test_stats_evidence.py against the papers' formulas, and ppi-python
brings numba, scikit-learn, statsmodels and a downloader (gdown) into the web process for them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from stats.intervals import Values, betting_cs, clopper_pearson, effective_n, korn_graubard


@dataclass(frozen=True)
class Estimate:
    """A share with its interval. ``n`` people's values (or labelled items) went in; ``lam`` is the
    weight the judge got (0: people alone); ``effective_n`` is how many people's values alone would
    have given the same precision (n for people alone; more where the judge helped)."""

    value: float
    low: float
    high: float
    n: int
    lam: float = 0.0
    effective_n: float | None = None

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2


Flags = Sequence[bool] | np.ndarray


def _z(level: float) -> float:
    return NormalDist().inv_cdf(0.5 + level / 2)


def _clip(value: float, low: float = 0.0, high: float = 1.0) -> float:
    return min(max(value, low), high)


def share_estimate(
    value: float, variance: float, n: int, cap: float, lam: float = 0.0, level: float = 0.95
) -> Estimate:
    """A share estimated with ``variance`` from ``n`` people's values, as an exact binomial
    interval at its effective sample size (Korn-Graubard, n - 1 degrees of freedom), which holds at
    small n and extreme shares where the normal interval collapses. ``cap``: the most the effective
    size can be (every comparison voted)."""
    if n < 2 or not math.isfinite(variance):
        return Estimate(value, 0.0, 1.0, n, lam, float(n))
    share = _clip(value)
    low, high, _ = korn_graubard(share, variance, cap, df=n - 1, level=level)
    return Estimate(value, low, high, n, lam, effective_n(share, variance, cap))


def mean_variance(values: np.ndarray, pseudo: Sequence[float]) -> float:
    """The variance of the mean of ``values`` (n of them), computed with ``pseudo`` values added:
    the most and least an item can contribute, one each, as Agresti and Coull add two to a binomial.
    Without them a sample that happens to show no disagreement (every vote a win, the judge right
    each time) has variance 0, an effective sample size of every comparison, and an interval that
    misses: at 98% over 100 votes the judge-assisted interval covered 0.94 of the time without,
    0.98 with (bench/evidence.py)."""
    n = len(values)
    if n < 2:
        return math.inf
    return float(np.var(np.concatenate([values, np.asarray(pseudo, dtype=float)]), ddof=1)) / n


def classical_mean(y: Values, level: float = 0.95, cap: float | None = None) -> Estimate:
    """The people-only share: the mean of their values (0/1 outcomes: the exact Clopper-Pearson
    interval; weighted terms of a sampled study: Korn-Graubard at the terms' variance)."""
    values = np.asarray(y, dtype=float)
    n = len(values)
    if n == 0:
        return Estimate(math.nan, 0.0, 1.0, 0)
    mean = float(values.mean())
    if bool(np.all((values == 0) | (values == 1))):
        low, high = clopper_pearson(float(values.sum()), n, level)
        return Estimate(mean, low, high, n, 0.0, float(n))
    variance = mean_variance(values, [0.0, max(1.0, float(values.max()))])
    return share_estimate(mean, variance, n, cap if cap is not None else n, 0.0, level)


def power_tuning(y: np.ndarray, f_labeled: np.ndarray, n_unlabeled: float) -> float:
    """PPI++'s weight for the mean (Angelopoulos, Duchi, Zrnic 2023, eq. 6):
    lam = Cov(Y, f) / ((1 + n/N) Var(f)), clipped to [0, 1]; N infinite when the judge's mean over
    every item is known exactly."""
    n = len(y)
    if n < 2:
        return 0.0
    var_f = float(np.var(f_labeled, ddof=1))
    if var_f <= 0:
        return 0.0
    cov = float(np.cov(y, f_labeled, ddof=1)[0, 1])
    ratio = 0.0 if math.isinf(n_unlabeled) else n / max(n_unlabeled, 1)
    return _clip(cov / ((1 + ratio) * var_f))


def ppi_mean(
    y: Sequence[float] | np.ndarray,
    f_labeled: Sequence[float] | np.ndarray,
    f_unlabeled: Sequence[float] | np.ndarray,
    level: float = 0.95,
    lam: float | None = None,
) -> Estimate:
    """The people's mean from their values ``y`` on n items, the judge's predictions on those same
    items and on N others (PPI++): lam * mean(f_unlabeled) + mean(y - lam * f_labeled), with the
    variance of the two independent parts turned into an interval at its effective sample size
    (capped at n + N: people on every item). Unbiased for any judge; lam = 0 gives the people-only
    estimate back."""
    y_, fl, fu = (np.asarray(a, dtype=float) for a in (y, f_labeled, f_unlabeled))
    n, big_n = len(y_), len(fu)
    if n == 0:
        return Estimate(math.nan, 0.0, 1.0, 0)
    if lam is None:
        lam = power_tuning(y_, fl, big_n) if big_n else 0.0
    if lam == 0:
        return classical_mean(y_, level)
    rectifier = y_ - lam * fl
    value = float(lam * fu.mean() + rectifier.mean()) if big_n else float(rectifier.mean())
    variance = mean_variance(rectifier, [1.0, -lam])  # a person and the judge disagreeing, each way
    if big_n > 1:
        variance += lam**2 * float(np.var(fu, ddof=1)) / big_n
    return share_estimate(value, variance, n, n + big_n, lam, level)


def judge_assisted_terms(
    y: Values, f_labeled: Values, f_all: Values
) -> tuple[np.ndarray, float, float]:
    """For the people's mean over a fixed set of items whose every member the judge has seen
    (``f_all``), from people's values on a uniform sample of them: the rectifiers y - lam f, the
    known offset lam * mean(f_all), and lam (PPI++ with N infinite). The mean of the rectifiers
    plus the offset is the estimate; only the rectifiers vary."""
    y_, fl = np.asarray(y, dtype=float), np.asarray(f_labeled, dtype=float)
    lam = power_tuning(y_, fl, math.inf)
    return y_ - lam * fl, float(lam * np.mean(f_all)), lam


def judge_assisted_mean(
    y: Values, f_labeled: Values, f_all: Values, level: float = 0.95
) -> Estimate:
    """The judge-assisted mean with its interval at one look (at the end): the rectifiers'
    variance as an effective sample size, capped at the items there are."""
    if len(y) == 0:
        return Estimate(math.nan, 0.0, 1.0, 0)
    rectifier, offset, lam = judge_assisted_terms(y, f_labeled, f_all)
    if lam == 0:
        return classical_mean(y, level)
    n = len(rectifier)
    value = float(rectifier.mean()) + offset
    variance = mean_variance(rectifier, [1.0, -lam])  # a person and the judge disagreeing, each way
    return share_estimate(value, variance, n, max(len(f_all), n), lam, level)


# -- votes where the judge is least sure ------------------------------------------------------------


def active_probabilities(uncertainty: Sequence[float], floor: float = 0.2) -> np.ndarray:
    """Where the next vote goes: probabilities proportional to the square root of the judge's
    expected squared error on each item (Zrnic and Candes 2024), mixed with uniform (``floor``) so
    that no item is starved when the judge is confidently wrong."""
    u = np.sqrt(np.clip(np.asarray(uncertainty, dtype=float), 0.0, None))
    n = len(u)
    active = u / u.sum() if u.sum() > 0 else np.full(n, 1 / n)
    return (1 - floor) * active + floor / n


def sampling_probabilities(uncertainty: Sequence[float], rate: float, floor: float = 0.2) -> np.ndarray:
    """Per item, the chance that people vote on it, for a study that asks people about a ``rate``
    share of its items: proportional to ``active_probabilities`` (where the judge is least sure),
    capped at 1 with the excess spread over the rest so that the chances still average ``rate``
    (Zrnic and Candes 2024, with their budget constraint)."""
    n = len(uncertainty)
    if not 0 < rate <= 1:
        raise ValueError(f"rate must be in (0, 1], got {rate}")
    if n == 0:
        return np.zeros(0)
    weights = active_probabilities(uncertainty, floor) * n
    pi = np.minimum(rate * weights, 1.0)
    for _ in range(n):  # raise the uncapped ones until the budget is spent (at most n rounds)
        free = pi < 1.0
        missing = rate * n - pi.sum()
        if missing <= 1e-12 or not free.any():
            break
        pi[free] = np.minimum(pi[free] * (1 + missing / pi[free].sum()), 1.0)
    return pi


def walked(order: Values, drawn: Flags, voted: Flags) -> np.ndarray:
    """The items of a sampled study whose terms are known: in the study's random order, every item
    up to the first one drawn for people that has no vote yet (excluded). A prefix of a random
    order is a random sample of the items, whatever order the votes arrive in."""
    order_ = np.asarray(order)
    sequence = np.argsort(order_, kind="stable")
    waiting = np.asarray(drawn, dtype=bool)[sequence] & ~np.asarray(voted, dtype=bool)[sequence]
    stop = int(np.argmax(waiting)) if waiting.any() else len(sequence)
    return sequence[:stop]


def sampled_terms(
    y: Values,
    f: Values,
    drawn: Flags,
    pi: Values,
    lam: float | None = None,
    f_mean: float | None = None,
) -> tuple[np.ndarray, float]:
    """Active inference's per-item terms (Zrnic and Candes 2024, their active mean estimator), each
    unbiased for the people's value of its item whatever the judge (``y`` is read only where drawn):
    lam f + drawn (y - lam f) / pi; or, where the judge's mean over every item of the study is known
    (``f_mean``: it saw them all), lam f_mean + drawn (y - lam f) / pi, whose mean over a random part
    of the items is unbiased for the study and varies only through the people's part. ``lam``
    (PPI++ power tuning) minimises the terms' variance, clipped to [0, 1]: 0 gives the people-only
    (Horvitz-Thompson) terms, which need no judge."""
    xi = np.asarray(drawn, dtype=bool)
    pi_ = np.asarray(pi, dtype=float)
    f_ = np.asarray(f, dtype=float)
    a = np.where(xi, np.asarray(y, dtype=float) / pi_, 0.0)
    b = np.where(xi, f_ / pi_, 0.0)
    c = np.full(len(a), f_mean) - b if f_mean is not None else f_ - b  # terms: a + lam c
    if lam is None:
        lam = 0.0
        if len(a) > 1 and float(np.var(c, ddof=1)) > 0:
            lam = _clip(-float(np.cov(a, c, ddof=1)[0, 1]) / float(np.var(c, ddof=1)))
    return a + lam * c, lam


# -- intervals one may look at after every vote ----------------------------------------------------

CS_PLANNED_MAX = 1000  # the bets are tuned for min(comparisons, this) values (stats.intervals)


def cs_planned_n(comparisons: int) -> int:
    """The number of values a study's confidence sequence is tuned for, fixed before any vote:
    its comparisons per baseline, at most CS_PLANNED_MAX (bets tuned for 300-1,000 values reach
    +-5 points at a 50% share after about 560-650; tuned for 5,000, after 1,140)."""
    return max(min(comparisons, CS_PLANNED_MAX), 2)


def predictable_weights(a: np.ndarray, c: np.ndarray) -> np.ndarray:
    """The judge's weight for each value of a sequence a + lam c, chosen from the values before it
    only (so that a betting sequence stays valid): the variance-minimising -Cov(a, c) / Var(c) of
    the earlier values, clipped to [0, 1]; 0 until two are known."""
    n = len(a)
    if n == 0:
        return np.zeros(0)
    k = np.arange(n, dtype=float)  # values before each
    sa, sc = np.concatenate(([0.0], np.cumsum(a)[:-1])), np.concatenate(([0.0], np.cumsum(c)[:-1]))
    sac = np.concatenate(([0.0], np.cumsum(a * c)[:-1]))
    scc = np.concatenate(([0.0], np.cumsum(c * c)[:-1]))
    with np.errstate(invalid="ignore", divide="ignore"):
        cov = sac - sa * sc / k
        var = scc - sc * sc / k
        lam = np.where((k >= 2) & (var > 1e-12), -cov / var, 0.0)
    return np.clip(np.nan_to_num(lam), 0.0, 1.0)


def confidence_sequence(
    values: Values, lower: float = 0.0, upper: float = 1.0, planned_n: int | None = None, alpha: float = 0.05
) -> Estimate:
    """The running mean of values known to lie in [lower, upper], with the betting confidence
    sequence's bounds after the last one (valid at every look)."""
    v = np.asarray(values, dtype=float)
    n = len(v)
    if n == 0:
        return Estimate(math.nan, 0.0, 1.0, 0)
    low, high = betting_cs(v, lower, upper, alpha, planned_n).at(n)
    return Estimate(float(v.mean()), max(low, 0.0), min(high, 1.0), n)


def assisted_terms(y: Values, f: Values, f_mean: float) -> tuple[np.ndarray, np.ndarray, tuple]:
    """The people's values with the judge's help, one per value in the order they arrived:
    y - lam f + lam * f_mean, lam chosen from the earlier values (predictable_weights), so every term
    lies in [f_mean - 1, f_mean + 1] and has the people's mean whatever the judge (PPI++ with the
    judge's mean over every item known). Returns the terms, the weights and the terms' range."""
    y_, f_ = np.asarray(y, dtype=float), np.asarray(f, dtype=float)
    lam = predictable_weights(y_, f_mean - f_)
    return y_ + lam * (f_mean - f_), lam, (f_mean - 1, f_mean + 1)


def assisted_sequence(
    y: Values, f: Values, f_mean: float, planned_n: int | None = None, alpha: float = 0.05
) -> Estimate:
    """The people's mean with the judge's help, valid at every look (assisted_terms in a betting
    confidence sequence). The value shown is PPI++'s estimate with the weight fitted on every value
    (the best one-look estimate), kept inside the sequence's bounds."""
    if len(y) == 0:
        return Estimate(math.nan, 0.0, 1.0, 0)
    terms, lam, (lower, upper) = assisted_terms(y, f, f_mean)
    e = confidence_sequence(terms, lower, upper, planned_n, alpha)
    rectifier, offset, _ = judge_assisted_terms(y, f, [f_mean])
    value = _clip(float(rectifier.mean()) + offset, e.low, e.high)
    return Estimate(value, e.low, e.high, e.n, float(lam[-1]))


def sampled_sequence_terms(
    y: Values,
    f: Values,
    drawn: Flags,
    pi: Values,
    pi_min: float,
    f_mean: float | None,
) -> tuple[np.ndarray, np.ndarray, tuple]:
    """A sampled study's terms over its walked prefix, in its order: active inference's
    (sampled_terms) with the judge's weight chosen from earlier terms only, or people alone
    (Horvitz-Thompson) without ``f_mean``. Each term lies in [f_mean - 1/pi_min, f_mean + 1/pi_min]
    (people alone: [0, 1/pi_min]), ``pi_min`` the smallest chance of the study, fixed before the
    first vote. Returns the terms, the weights and the range."""
    xi = np.asarray(drawn, dtype=bool)
    pi_ = np.asarray(pi, dtype=float)
    a = np.where(xi, np.asarray(y, dtype=float) / pi_, 0.0)
    if f_mean is None:
        return a, np.zeros(len(a)), (0.0, 1 / pi_min)
    c = np.full(len(a), f_mean) - np.where(xi, np.asarray(f, dtype=float) / pi_, 0.0)
    lam = predictable_weights(a, c)
    return a + lam * c, lam, (f_mean - 1 / pi_min, f_mean + 1 / pi_min)


def sampled_sequence(
    y: Values,
    f: Values,
    drawn: Flags,
    pi: Values,
    pi_min: float,
    f_mean: float | None,
    planned_n: int | None = None,
    alpha: float = 0.05,
) -> Estimate:
    """A sampled study's estimate over its walked prefix, valid at every look (sampled_sequence_terms
    in a betting confidence sequence)."""
    if len(drawn) == 0:
        return Estimate(math.nan, 0.0, 1.0, 0)
    terms, lam, (lower, upper) = sampled_sequence_terms(y, f, drawn, pi, pi_min, f_mean)
    e = confidence_sequence(terms, lower, upper, planned_n, alpha)
    return Estimate(e.value, e.low, e.high, e.n, float(lam[-1]))


# -- length-controlled win rates -------------------------------------------------------------------


def logistic_fit(x: np.ndarray, y: np.ndarray, weights: np.ndarray | None = None, ridge: float = 1e-6) -> np.ndarray:
    """Coefficients of a logistic regression (Newton's method / IRLS; x holds its own intercept
    column). ``y`` may be fractional (a tie counts one half, as AlpacaEval counts it)."""
    w = np.ones(len(y)) if weights is None else np.asarray(weights, dtype=float)
    beta = np.zeros(x.shape[1])
    for _ in range(50):
        p = 1 / (1 + np.exp(-(x @ beta)))
        gradient = x.T @ (w * (y - p)) - ridge * beta
        hessian = (x * (w * p * (1 - p))[:, None]).T @ x + ridge * np.eye(x.shape[1])
        step = np.linalg.solve(hessian, gradient)
        beta += step
        if np.max(np.abs(step)) < 1e-10:
            break
    return beta


@dataclass(frozen=True)
class LengthControlled:
    raw: float  # the win rate as counted (a tie is half a win)
    controlled: float | None  # predicted at no length difference; None when lengths hardly vary
    per_100_tokens: float | None  # how much a 100-token longer answer moves the win rate there
    n: int


def length_controlled_win_rate(
    outcomes: Values, length_difference: Values, scale: float = 100.0
) -> LengthControlled:
    """AlpacaEval 2's length control, the part that carries over to a single candidate: fit
    logit P(win) = a + b * tanh(length difference / scale) and report the mean of the predictions
    with the length term set to zero. ``outcomes`` are 1 (candidate), 0.5 (tie), 0 (baseline);
    ``length_difference`` is the candidate's length minus the baseline's (tokens)."""
    y = np.asarray(outcomes, dtype=float)
    d = np.asarray(length_difference, dtype=float)
    n = len(y)
    if n == 0:
        return LengthControlled(math.nan, math.nan, math.nan, 0)
    spread = np.tanh(d / scale)
    if n < 5 or float(spread.std()) < 0.05:  # length cannot be told apart from the candidate itself
        return LengthControlled(float(y.mean()), None, None, n)
    x = np.column_stack([np.ones(n), spread])
    a, b = logistic_fit(x, y)
    controlled = 1 / (1 + math.exp(-a))
    slope = controlled * (1 - controlled) * b * (1 - math.tanh(0) ** 2)  # d p / d (diff / scale) at 0
    return LengthControlled(float(y.mean()), float(controlled), float(slope), n)


STYLE_FEATURES = ("length", "headers", "lists", "bold")


def style_difference(candidate: float, baseline: float) -> float:
    """Chatbot Arena's normalised difference of one style feature: (a - b) / (a + b), 0 when
    neither answer has any."""
    total = candidate + baseline
    return (candidate - baseline) / total if total else 0.0


def style_differences(candidate: Sequence[float] | np.ndarray, baseline: Sequence[float] | np.ndarray) -> np.ndarray:
    """``style_difference`` of many pairs at once."""
    a, b = np.asarray(candidate, dtype=float), np.asarray(baseline, dtype=float)
    total = a + b
    return np.divide(a - b, total, out=np.zeros_like(total), where=total != 0)


@dataclass(frozen=True)
class StyleControlled:
    raw: float
    controlled: float | None  # predicted with every style feature equal; None when none varies
    # per feature: how many points the win rate moves when the candidate has twice the baseline's
    # (a normalised difference of 1/3) and the logistic coefficient itself
    effects: dict[str, tuple[float, float]]
    n: int


def style_controlled_win_rate(
    outcomes: Sequence[float], candidate: dict[str, Sequence[float]], baseline: dict[str, Sequence[float]]
) -> StyleControlled:
    """Chatbot Arena's style control (Li, Chiang, Dunlap et al., "Does style matter? Disentangling
    style and substance in Chatbot Arena", LMSYS blog, August 2024), for one candidate against one
    baseline, where its Bradley-Terry model is a logistic regression: logit P(candidate wins) =
    a + sum_k g_k z_k, with z_k the normalised difference of style feature k (answer length in
    tokens, Markdown headers, list items, bold spans), standardised as Arena does. The controlled
    win rate is the model's prediction with no style difference, sigmoid(a). ``outcomes``: 1, 0.5
    (tie, half a win), 0."""
    y = np.asarray(outcomes, dtype=float)
    n = len(y)
    if n == 0:
        return StyleControlled(math.nan, None, {}, 0)
    columns, names, scales = [np.ones(n)], [], []
    for name in STYLE_FEATURES:
        z = style_differences(candidate[name], baseline[name])
        spread = float(z.std())
        if spread < 0.02:  # the feature hardly varies: it cannot be told from the candidate
            continue
        columns.append(z / spread)
        names.append(name)
        scales.append(spread)
    if n < 5 or not names:
        return StyleControlled(float(y.mean()), None, {}, n)
    beta = logistic_fit(np.column_stack(columns), y, ridge=1e-2)
    intercept = float(beta[0])
    controlled = 1 / (1 + math.exp(-intercept))
    effects = {}
    for name, coefficient, scale in zip(names, beta[1:], scales, strict=True):
        g = float(coefficient) / scale  # per unit of normalised difference
        effects[name] = (1 / (1 + math.exp(-(intercept + g / 3))) - controlled, g)
    return StyleControlled(float(y.mean()), controlled, effects, n)


# -- planning votes before a study opens -----------------------------------------------------------


def judge_r2(shares: Sequence[float], agreement: float) -> float:
    """How much of the variance of a person's "candidate wins" the judge's verdict explains, for
    a judge that gives the people's outcome with probability ``agreement`` and otherwise one of the
    other two at random: Var(E[Y | verdict]) / Var(Y), the share PPI++ can remove at best."""
    w, t, loss = shares
    truth = np.array([w, t, loss], dtype=float)
    wrong = (1 - agreement) / 2
    joint = np.array([[agreement if j == i else wrong for j in range(3)] for i in range(3)]) * truth[:, None]
    p_verdict = joint.sum(axis=0)
    e_win = np.divide(joint[0], p_verdict, out=np.zeros(3), where=p_verdict > 0)
    variance = w * (1 - w)
    return float((p_verdict * (e_win - w) ** 2).sum() / variance) if variance > 0 else 0.0


def _anytime_votes(p: float, target: float, alpha: float, planned_n: int) -> int:
    """Values until the betting sequence is first within +-target for a share p: the median over
    simulated studies (3-16 of them, as many as 20 million grid steps allow; a fixed seed, so a plan
    does not change between two asks). An idealised run with the share exactly p at every step
    takes longer than most real runs: the running intersection gains from the noise."""
    fixed = math.ceil((_z(1 - alpha) * math.sqrt(max(p * (1 - p), 1e-9)) / target) ** 2)
    length = 4 * fixed + 200
    breaks = 500
    runs = min(max(int(20e6 // (length * breaks)), 3), 16)
    rng = np.random.default_rng(0)
    times = []
    for _ in range(runs):
        values = (rng.random(length) < p).astype(float)
        cs = betting_cs(values, alpha=alpha, planned_n=planned_n, breaks=breaks)
        narrow = np.flatnonzero((cs.high - cs.low) / 2 <= target)
        times.append(int(narrow[0]) + 1 if len(narrow) else length)
    return int(np.median(times))


def votes_needed(
    p: float,
    target: float,
    level: float = 0.95,
    r2: float = 0.0,
    anytime: bool = False,
    comparisons: int | None = None,
) -> int:
    """People's votes for a win share near ``p`` to be known to +-``target``: a fixed-n interval,
    or an anytime-valid one (a study looked at as it goes: the betting sequence the study uses,
    tuned as the study tunes it for its ``comparisons``); with a judge explaining ``r2`` of the
    variance, the variance is (1 - r2) of the people-only one."""
    sd = math.sqrt(max(p * (1 - p) * (1 - r2), 1e-9))
    fixed = math.ceil((_z(level) * sd / target) ** 2)
    if not anytime:
        return fixed
    planned = cs_planned_n(comparisons if comparisons else CS_PLANNED_MAX)
    alone = _anytime_votes(min(max(p, 0.02), 0.98), target, 1 - level, planned)
    return max(math.ceil(alone * (1 - r2)), fixed)


@dataclass(frozen=True)
class VotePlan:
    per_baseline: int
    votes: int
    hours: float
    cost: float


def plan_votes(
    baselines: int,
    expected_shares: Sequence[float],
    target: float,
    seconds_per_vote: float,
    pay_per_hour: float,
    agreement: float | None = None,
    anytime: bool = True,
    comparisons: int | None = None,
) -> VotePlan:
    """Votes, annotator-hours and money for every baseline's win share to be known to +-target
    (with the judge's help when its ``agreement`` with people is given)."""
    r2 = judge_r2(expected_shares, agreement) if agreement is not None else 0.0
    per = votes_needed(expected_shares[0], target, r2=r2, anytime=anytime, comparisons=comparisons)
    hours = per * baselines * seconds_per_vote / 3600
    return VotePlan(per, per * baselines, hours, hours * pay_per_hour)
