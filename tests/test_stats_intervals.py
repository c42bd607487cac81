"""Intervals that hold at any n (stats/intervals.py), checked against the reference implementations
(statsmodels' Clopper-Pearson, confseq's betting confidence sequence) and by their coverage through
the functions every figure calls (stats.outcomes.win_tie_loss, label_shares)."""

import json
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import binom
from statsmodels.stats.proportion import proportion_confint

from stats.intervals import betting_cs, clopper_pearson, korn_graubard, share_interval
from stats.outcomes import label_shares, win_tie_loss

REFERENCE = Path(__file__).parent / "data" / "confseq_reference.json"


def test_clopper_pearson_is_statsmodels_beta_interval():
    for n in (1, 7, 30, 300):
        for x in sorted({0, 1, n // 3, n - 1, n}):
            low, high = proportion_confint(x, n, alpha=0.05, method="beta")
            assert clopper_pearson(x, n) == pytest.approx((low, high), abs=1e-12)


def test_the_betting_sequence_is_confseqs_hedged_capital_sequence():
    reference = json.loads(REFERENCE.read_text())
    assert len(reference) == 5
    for name, case in reference.items():
        ours = betting_cs(case["x"], planned_n=case.get("planned_n"))
        assert ours.low == pytest.approx(case["low"], abs=1e-9), name
        assert ours.high == pytest.approx(case["high"], abs=1e-9), name


def test_a_share_interval_covers_at_least_95_percent_at_every_n_and_share():
    """Exact coverage (every possible count, weighted by its binomial chance) of Figure 1's win
    share as win_tie_loss computes it, one outcome per comparison. The percentile bootstrap it
    replaces covered 0.44 at 98% over 30 and showed "100% [100, 100]"."""
    worst = 1.0
    for n in (10, 20, 30, 100):
        intervals = [
            win_tie_loss({(1, 0, 0): x, (0, 1, 0): n - x}).win_ci for x in range(n + 1)
        ]
        low = np.array([i[0] for i in intervals])
        high = np.array([i[1] for i in intervals])
        assert np.all(high - low > 0), "never zero width from finite data"
        for p in np.linspace(0.02, 0.98, 49):
            covered = (low <= p) & (p <= high)
            worst = min(worst, float(binom.pmf(np.arange(n + 1), n, p)[covered].sum()))
    assert worst >= 0.95


def test_29_safe_answers_of_30_are_not_shown_as_certain():
    shares = label_shares([{"safe": 1}] * 29 + [{"unsafe": 1}], win="safe", loss="unsafe")
    low, high = shares.win_ci
    assert shares.win == pytest.approx(29 / 30) and low < 0.98 < high < 1.0
    everything = label_shares([{"safe": 1}] * 30, win="safe", loss="unsafe")
    assert everything.win == 1.0 and everything.win_ci[0] < 0.9, "30 of 30 still leaves room below"


def test_clustered_votes_get_an_interval_at_their_effective_sample_size():
    """Three votes per prompt that tend to agree (prompts drawn with their own share): every vote
    counts, prompts are the unit. Seeded, so it cannot flake; the margin is measured: 0.944-0.998
    over these settings."""
    rng = np.random.default_rng(11)
    for n, mean in ((10, 0.1), (20, 0.1), (30, 0.9), (100, 0.5)):
        covered = 0
        for _ in range(1000):
            p = rng.beta(mean * 2, (1 - mean) * 2, n)
            votes = rng.binomial(3, p)
            patterns: dict = {}
            for x in votes:
                key = (int(x), int(3 - x), 0)
                patterns[key] = patterns.get(key, 0) + 1
            low, high = win_tie_loss(patterns, "all").win_ci
            covered += low <= mean <= high
        assert covered / 1000 >= 0.93, (n, mean)


def test_the_effective_sample_size_falls_back_to_exact_where_every_unit_holds_one_label():
    assert share_interval([1, 0, 1, 1], [1, 1, 1, 1])[:2] == pytest.approx(clopper_pearson(3, 4))
    # three identical votes per unit say no more than one: share 2/3; the spread of the units about
    # it, 4 x 1 + 2 x 4, plus one unit of three successes and one of none (1 + 4); times n / (n - 1)
    # over the 18 labels squared; then Korn-Graubard's t with 5 degrees of freedom: under 6
    low, high, n_eff = share_interval([3, 0, 3, 3, 0, 3], [3] * 6)
    variance = 6 / 5 * (12 + 5) / 18**2
    assert n_eff == pytest.approx((2 / 3) * (1 / 3) / variance * (1.959964 / 2.570582) ** 2, rel=1e-4)
    assert n_eff < 6 and low < 2 / 3 < high
    assert korn_graubard(0.0, 0.0, 40)[2] == 40, "no spread to read: the labels there are"


def test_the_betting_sequence_holds_at_every_look_where_repeated_fixed_intervals_do_not():
    """Looked at after every value of 300, the truth leaves the betting sequence at most 5% of the
    time; repeated exact fixed-n intervals would have misled far more often."""
    rng = np.random.default_rng(5)
    cs_missed = fixed_missed = 0
    for _ in range(400):
        x = (rng.random(300) < 0.3).astype(float)
        cs = betting_cs(x, planned_n=300)
        cs_missed += bool(np.any((cs.low > 0.3) | (cs.high < 0.3)))
        looks = np.arange(10, 301, 5)
        low, high = proportion_confint(np.cumsum(x)[looks - 1], looks, alpha=0.05, method="beta")
        fixed_missed += bool(np.any((low > 0.3) | (high < 0.3)))
    assert cs_missed / 400 <= 0.05
    assert fixed_missed / 400 >= 0.15


def test_values_outside_their_stated_range_are_refused():
    with pytest.raises(ValueError, match=r"outside their stated range \[0.0, 1.0\]"):
        betting_cs([0.5, 1.5])
    low, high = betting_cs([-1.0, 1.0, 0.0], lower=-1.0, upper=1.0).at(3)
    assert -1.0 <= low < 0.0 < high <= 1.0
