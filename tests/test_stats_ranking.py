"""stats/ranking.py: the pairs' shares with the judge's help, Bradley-Terry from them, rank-sets.
Checked against statsmodels where it has the same estimator, and by simulation (bounded: each
check's chance to fail by chance is below 1 in 10,000)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import statsmodels.api as sm

from stats.ranking import (
    PairShares,
    bradley_terry_from_shares,
    cs_multiplier,
    oriented,
    pair_shares,
    rank_sets,
)


def test_bradley_terry_is_statsmodels_weighted_least_squares_of_the_logits():
    rng = np.random.default_rng(3)
    k = 4
    first, second = np.array([0, 0, 0, 1, 1, 2]), np.array([1, 2, 3, 2, 3, 3])
    share = rng.uniform(0.2, 0.8, 6)
    shares = PairShares(first, second, share, rng.uniform(0.001, 0.01, 6), np.full(6, 50), np.zeros(6, int), 0.0)
    fit = bradley_terry_from_shares(k, shares)
    weight = (share * (1 - share)) ** 2 / shares.variance
    x = np.zeros((6, k))
    x[np.arange(6), first], x[np.arange(6), second] = 1, -1
    ols = sm.WLS(np.log(share / (1 - share)), x[:, 1:], weights=weight)  # system 0 anchored at 0
    reference = ols.fit()
    theta = np.concatenate([[0.0], reference.params])
    assert fit.theta - fit.theta[0] == pytest.approx(theta, abs=1e-9)
    assert abs(fit.theta.sum()) < 1e-12
    # the covariance of a difference is the same whichever system is anchored
    d = fit.cov[1, 1] + fit.cov[0, 0] - 2 * fit.cov[0, 1]
    assert d == pytest.approx(reference.cov_params()[0, 0] / reference.scale, rel=1e-9)


def test_people_alone_are_each_pairs_mean_vote():
    k = 3
    first, second = np.array([0, 1, 0, 2, 2, 1]), np.array([1, 0, 1, 0, 0, 2])
    y = np.array([1.0, 1.0, 0.5, 0.0, 1.0, 1.0])
    shares = pair_shares(k, (first, second, y, np.zeros(6)))
    a, b, v = oriented(first, second, y)
    assert shares.lam == 0.0
    assert shares.first.tolist() == [0, 0] and shares.second.tolist() == [1, 2]  # pair (1, 2) has one vote
    assert shares.share.tolist() == [v[(a == 0) & (b == 1)].mean(), v[(a == 0) & (b == 2)].mean()]
    assert shares.share[0] == pytest.approx((1 + 0 + 0.5) / 3)  # 1 beat 0 once: 0's share 0


def _one_run(rng, judge_bias: float):
    """Two systems, a pool of 400 prompts all judged; people vote on 40 drawn at random (each
    prompt's chance mostly near 0 or 1: people agree on most prompts). The judge tracks the
    chances but leans towards system 0 by ``judge_bias``."""
    chance = rng.beta(0.3, 0.3, 400)
    judge = np.clip(chance + judge_bias + rng.normal(0, 0.1, 400), 0, 1)
    asked = rng.choice(400, 40, replace=False)
    y = (rng.random(40) < chance[asked]).astype(float)
    people = (np.zeros(40, int), np.ones(40, int), y, judge[asked])
    shares = pair_shares(2, people, (np.zeros(400, int), np.ones(400, int), judge))
    return shares.share[0], shares.variance[0], chance.mean(), shares.lam, y.mean()


def test_the_judges_help_keeps_the_share_unbiased_and_narrows_it_even_from_a_biased_judge():
    rng = np.random.default_rng(11)
    runs = np.array([_one_run(rng, judge_bias=0.25) for _ in range(2000)])
    share, stated, truth, lam, alone = runs.T
    error = share - truth
    # unbiased whatever the judge: the mean error within 4.5 standard errors of 0 (fails by chance < 1e-5)
    assert abs(error.mean()) < 4.5 * error.std() / math.sqrt(len(error))
    # the variance it states is the variance it has (within 15%)
    assert stated.mean() == pytest.approx(error.var(), rel=0.15)
    # a judge that tracks the people is used, and narrows the same votes' people-only share
    # (expected about 0.45 of its variance here; the bound is more than 5 standard errors away)
    assert lam.mean() > 0.7
    assert error.var() < 0.7 * (alone - truth).var()


def test_rank_sets_cover_and_narrow_to_the_order_when_the_pairs_are_known():
    k = 4
    theta = np.array([0.0, 0.5, 1.0, 2.0])
    first = np.array([i for i in range(k) for j in range(i + 1, k)])
    second = np.array([j for i in range(k) for j in range(i + 1, k)])
    p = 1 / (1 + np.exp(-(theta[first] - theta[second])))
    n = np.full(len(p), 20000)
    sure = bradley_terry_from_shares(k, PairShares(first, second, p, p * (1 - p) / n, n, n, 0.0))
    sets = rank_sets(sure, n=int(n.sum()), planned_n=int(n.sum()))
    assert sets.low.tolist() == [4, 3, 2, 1] and sets.high.tolist() == [4, 3, 2, 1]
    assert sets.settled_top() == 3 and sets.covers(theta)
    few = np.full(len(p), 10)
    unsure = bradley_terry_from_shares(k, PairShares(first, second, p, p * (1 - p) / few, few, few, 0.0))
    wide = rank_sets(unsure, n=60, planned_n=2000)
    assert wide.covers(theta) and wide.settled_top() is None and (wide.high - wide.low).min() >= 1


def test_the_every_look_multiplier_is_wider_than_one_looks_and_grows_slowly():
    one_look = 1.959963984540054
    at = [cs_multiplier(n, 0.05, 2000) for n in (10, 100, 2000, 20000, 200000)]
    assert all(m > one_look for m in at)
    assert min(at) == at[2] or at[2] < at[0], "narrowest near the planned number of votes"
    assert at[-1] < 1.6 * at[2], "then it grows like sqrt(log n): slowly"


def test_a_pair_all_one_way_is_settled_by_enough_votes_and_not_by_a_few():
    """Forty people all preferring the same checkpoint tell the two apart at every look's 95%;
    three do not (a share at the edge once kept its logit's variance near 4 however many voted)."""
    for n, settled in ((3, False), (40, True)):
        people = (np.zeros(n, int), np.ones(n, int), np.ones(n), np.ones(n))
        strengths = bradley_terry_from_shares(2, pair_shares(2, people))
        sets = rank_sets(strengths, n, 0.05, planned_n=n)
        assert (sets.settled_top() == 0) is settled, (n, sets)
