"""stats/evidence.py against hand-computed cases, the papers' formulas and small simulations."""

import math

import numpy as np
import pytest

from stats.evidence import (
    active_probabilities,
    assisted_sequence,
    classical_mean,
    confidence_sequence,
    judge_assisted_mean,
    length_controlled_win_rate,
    logistic_fit,
    power_tuning,
    ppi_mean,
    predictable_weights,
    sampled_sequence,
    sampled_sequence_terms,
    sampled_terms,
    sampling_probabilities,
    walked,
)
from stats.intervals import betting_cs, clopper_pearson, effective_n, korn_graubard


def test_the_people_only_interval_by_hand():
    e = classical_mean([1, 0, 1, 1])
    # 3 of 4: the exact binomial interval, which holds at any n (the normal one, 0.75 +- 0.49, did not)
    assert (e.value, e.n, e.lam, e.effective_n) == (0.75, 4, 0.0, 4.0)
    assert (e.low, e.high) == pytest.approx(clopper_pearson(3, 4))
    assert (e.low, e.high) == pytest.approx((0.19412, 0.99369), abs=1e-5)


def test_ppi_is_the_papers_estimator_and_its_variance():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 50).astype(float)
    f_l = np.clip(y * 0.7 + rng.random(50) * 0.3, 0, 1)
    f_u = rng.random(400)
    lam = 0.6
    e = ppi_mean(y, f_l, f_u, lam=lam)
    # Angelopoulos et al. 2023, with PPI++'s lambda: theta = lam mean(f_u) + mean(y - lam f_l)
    theta = lam * f_u.mean() + (y - lam * f_l).mean()
    # the rectifier's variance with a person and the judge disagreeing once each way added (so that
    # a sample showing no disagreement does not claim a variance of zero)
    rectifier = np.concatenate([y - lam * f_l, [1.0, -lam]])
    variance = lam**2 * f_u.var(ddof=1) / 400 + rectifier.var(ddof=1) / 50
    assert e.value == pytest.approx(theta)
    # the interval: exact binomial at the effective sample size theta (1 - theta) / variance (Korn-
    # Graubard, 49 degrees of freedom), which is also how many people's votes it is worth
    assert (e.low, e.high) == pytest.approx(korn_graubard(theta, variance, 450, df=49)[:2])
    assert e.effective_n == pytest.approx(effective_n(theta, variance, 450)) and e.effective_n > 50
    # no weight on the judge: the people-only estimate, exactly
    alone = ppi_mean(y, f_l, f_u, lam=0.0)
    assert (alone.value, alone.low, alone.high) == pytest.approx(
        (classical_mean(y).value, classical_mean(y).low, classical_mean(y).high)
    )


def test_power_tuning_is_ppi_plus_plus_lambda_and_trusts_a_useless_judge_with_nothing():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 200).astype(float)
    f = 0.5 * y + 0.25
    cov, var = np.cov(y, f, ddof=1)[0, 1], np.var(f, ddof=1)
    assert power_tuning(y, f, 800) == pytest.approx(min(cov / ((1 + 200 / 800) * var), 1))
    noise = rng.random(200)
    assert power_tuning(y, noise, 800) < 0.15
    assert power_tuning(y, 1 - f, 800) == 0.0, "a judge that points the wrong way gets no weight (clipped)"


def test_a_good_judge_narrows_the_interval_and_a_useless_one_costs_almost_nothing():
    rng = np.random.default_rng(2)
    p = rng.beta(0.6, 0.6, 2000)  # each item's chance that a person picks the candidate
    chosen = rng.integers(0, 2000, 300)
    y = (rng.random(300) < p[chosen]).astype(float)
    people = classical_mean(y)
    good = judge_assisted_mean(y, p[chosen], p)
    useless = judge_assisted_mean(y, rng.random(300), rng.random(2000))
    # 0.76 of the people's width here (0.72 before the variance kept a disagreement each way: the
    # price of intervals that hold at 98% over 100 votes too)
    assert good.half_width < 0.8 * people.half_width
    assert useless.half_width == pytest.approx(people.half_width, rel=0.05)


def test_judge_assisted_intervals_hold_the_truth_about_95_percent_of_the_time():
    rng = np.random.default_rng(3)
    p = rng.beta(0.6, 0.6, 1000)
    judge = np.clip(p + rng.normal(0, 0.2, 1000), 0, 1)  # an imperfect, even biased judge
    judge = np.clip(judge + 0.1, 0, 1)
    truth = p.mean()
    covered = 0
    for _ in range(400):
        chosen = rng.integers(0, 1000, 150)
        y = (rng.random(150) < p[chosen]).astype(float)
        e = judge_assisted_mean(y, judge[chosen], judge)
        covered += e.low <= truth <= e.high
    assert 0.91 <= covered / 400 <= 0.99, "unbiased whatever the judge's bias"


def test_chances_to_be_asked_of_people_by_hand():
    # sqrt(u) = [0, 0, 1, 1] -> active [0, 0, .5, .5]; with the uniform floor .2: [.05, .05, .45, .45]
    assert active_probabilities([0, 0, 1, 1]) == pytest.approx([0.05, 0.05, 0.45, 0.45])
    # a budget of half the items: 4 * rate * q
    assert sampling_probabilities([0, 0, 1, 1], 0.5) == pytest.approx([0.1, 0.1, 0.9, 0.9])
    # 3 of 4: the unsure ones would get 1.35, capped at 1; the rest raised until the mean is .75
    assert sampling_probabilities([0, 0, 1, 1], 0.75) == pytest.approx([0.5, 0.5, 1.0, 1.0])
    assert sampling_probabilities([0.2] * 5, 1.0) == pytest.approx([1.0] * 5)
    with pytest.raises(ValueError, match="rate"):
        sampling_probabilities([0.1], 0.0)


def test_the_walked_prefix_stops_at_the_first_item_still_waiting_for_people():
    order = [3, 1, 4, 2, 5]  # item 1 first, then 3, 0, 2, 4
    drawn = [True, False, True, True, True]
    voted = [True, False, False, True, True]  # item 2 (fourth in order) drawn and not voted yet
    assert list(walked(order, drawn, voted)) == [1, 3, 0]
    assert list(walked(order, drawn, [True, False, True, True, True])) == [1, 3, 0, 2, 4]


def test_the_active_terms_by_hand():
    y, f, drawn, pi = [1.0, 0.0, 1.0], [0.9, 0.2, 0.5], [True, False, True], [0.5, 0.5, 1.0]
    terms, lam = sampled_terms(y, f, drawn, pi, lam=0.5)
    # lam f + drawn (y - lam f) / pi
    assert lam == 0.5 and terms == pytest.approx([0.45 + 0.55 / 0.5, 0.1, 0.25 + 0.75])
    people_only, _ = sampled_terms(y, f, drawn, pi, lam=0.0)
    assert people_only == pytest.approx([2.0, 0.0, 1.0])  # Horvitz-Thompson
    _, tuned = sampled_terms(y, f, drawn, pi)
    assert 0.0 <= tuned <= 1.0
    # the judge's mean over every item known (0.6): lam f_mean + drawn (y - lam f) / pi
    known, _ = sampled_terms(y, f, drawn, pi, lam=0.5, f_mean=0.6)
    assert known == pytest.approx([0.3 + 0.55 / 0.5, 0.3, 0.3 + 0.75])


def test_people_asked_where_the_judge_is_unsure_give_unbiased_narrower_intervals_that_hold_the_truth():
    """A sampled study end to end on a known truth: the chances fixed from the judge, items walked
    in a random order, the estimate over a prefix. Unbiased, covering, and narrower than people
    alone at the same number of votes."""
    rng = np.random.default_rng(4)
    n = 800
    p = rng.beta(0.5, 0.5, n)  # each item's chance that people prefer the candidate
    judge = np.clip(p + rng.normal(0, 0.15, n), 0.01, 0.99)  # a decent judge
    truth = p.mean()
    pi = sampling_probabilities(judge * (1 - judge), 0.3)
    estimates, covered, widths, uniform_widths = [], 0, [], []
    for _ in range(300):
        drawn = rng.random(n) < pi
        y = (rng.random(n) < p).astype(float)
        prefix = walked(rng.permutation(n), drawn, np.ones(n, bool))[:500]  # looked at part way
        terms, _ = sampled_terms(y[prefix], judge[prefix], drawn[prefix], pi[prefix], f_mean=judge.mean())
        e = classical_mean(terms)
        estimates.append(e.value)
        covered += e.low <= truth <= e.high
        widths.append(e.half_width)
        votes = int(drawn[prefix].sum())
        uniform_widths.append(classical_mean(y[rng.choice(n, votes, replace=False)]).half_width)
    assert np.mean(estimates) == pytest.approx(truth, abs=0.01)
    assert 0.92 <= covered / 300 <= 0.98
    assert np.mean(widths) < 0.8 * np.mean(uniform_widths)  # about 0.72 here


def test_the_judges_weight_in_a_sequence_is_chosen_from_earlier_values_only():
    a = np.array([1.0, 0.0, 1.0, 1.0, 0.0, 1.0])
    c = np.array([-0.5, 0.5, -0.5, -0.5, 0.5, 0.4])
    lam = predictable_weights(a, c)
    assert lam[:2] == pytest.approx([0.0, 0.0]), "nothing to choose from yet"
    for t in range(2, 6):  # -Cov / Var of the values before t, clipped to [0, 1]
        cov, var = np.cov(a[:t], c[:t], ddof=0)[0, 1], np.var(c[:t])
        assert lam[t] == pytest.approx(min(max(-cov / var, 0), 1) if var > 0 else 0.0)


def test_a_judge_that_predicts_the_people_narrows_the_sequence_and_a_useless_one_costs_little():
    rng = np.random.default_rng(9)
    n, votes = 2000, 300
    p = rng.beta(0.5, 0.5, n)
    y = (rng.random(votes) < p[:votes]).astype(float)
    alone = confidence_sequence(y, planned_n=1000)
    good = assisted_sequence(y, p[:votes], float(p.mean()), planned_n=1000)
    useless_f = rng.random(n)
    useless = assisted_sequence(y, useless_f[:votes], float(useless_f.mean()), planned_n=1000)
    assert good.half_width < 0.8 * alone.half_width
    assert useless.half_width < 1.25 * alone.half_width
    for e in (alone, good, useless):
        assert e.low <= p.mean() <= e.high


def test_a_sampled_sequence_is_valid_at_every_look_with_and_without_the_judge():
    """Each of 200 sampled studies walked to the end, the truth checked after every comparison:
    it leaves neither sequence more than 5% of the time."""
    rng = np.random.default_rng(12)
    n = 200
    missed = {"people": 0, "judge": 0}
    for _ in range(200):
        p = rng.beta(0.6, 0.6, n)
        judge = np.clip(p + rng.normal(0, 0.2, n), 0.01, 0.99)
        pi = sampling_probabilities(judge * (1 - judge), 0.4)
        drawn = rng.random(n) < pi
        y = (rng.random(n) < p).astype(float)
        for key, f_mean in (("people", None), ("judge", float(judge.mean()))):
            terms, _, (lower, upper) = sampled_sequence_terms(y, judge, drawn, pi, float(pi.min()), f_mean)
            cs = betting_cs(terms, lower, upper, planned_n=n)  # the bounds after every comparison
            missed[key] += bool(np.any((cs.low > p.mean()) | (cs.high < p.mean())))
            final = sampled_sequence(y, judge, drawn, pi, float(pi.min()), f_mean, planned_n=n)
            assert (final.low, final.high) == pytest.approx((max(cs.low[-1], 0), min(cs.high[-1], 1)))
    assert missed["people"] / 200 <= 0.05 and missed["judge"] / 200 <= 0.05


def test_logistic_fit_recovers_known_coefficients():
    rng = np.random.default_rng(6)
    x = np.column_stack([np.ones(20000), rng.normal(size=20000)])
    y = (rng.random(20000) < 1 / (1 + np.exp(-(0.3 + 1.2 * x[:, 1])))).astype(float)
    a, b = logistic_fit(x, y)
    assert (a, b) == (pytest.approx(0.3, abs=0.05), pytest.approx(1.2, abs=0.05))
    # a constant share: the intercept is its logit
    assert logistic_fit(np.ones((4, 1)), np.array([1, 1, 1, 0.0]))[0] == pytest.approx(math.log(3), rel=1e-5)


def test_length_control_takes_out_a_preference_for_the_longer_answer():
    rng = np.random.default_rng(7)
    length = rng.normal(150, 120, 4000)  # the candidate writes longer
    p = 1 / (1 + np.exp(-(0.0 + 1.5 * np.tanh(length / 100))))  # no preference at equal length
    outcomes = (rng.random(4000) < p).astype(float)
    lc = length_controlled_win_rate(outcomes, length)
    assert lc.raw > 0.7 and lc.controlled == pytest.approx(0.5, abs=0.03) and lc.per_100_tokens > 0.3
    fair = length_controlled_win_rate((rng.random(4000) < 0.6).astype(float), length)
    assert fair.controlled == pytest.approx(fair.raw, abs=0.03), "no length effect: nothing to take out"


def test_the_share_of_variance_a_judge_explains_by_hand():
    from stats.evidence import judge_r2

    # shares .5/.2/.3, the judge right 75% of the time: E[win | verdict] = .857, .25, .2 with
    # P(verdict) = .4375, .25, .3125; Var(E[win | verdict]) = .0996 of Var(win) = .25
    assert judge_r2((0.5, 0.2, 0.3), 0.75) == pytest.approx(0.0996 / 0.25, abs=0.002)
    assert judge_r2((0.5, 0.2, 0.3), 1.0) == pytest.approx(1.0)
    assert judge_r2((0.5, 0.2, 0.3), 1 / 3) < 0.01, "a judge at chance explains nothing"


def test_votes_needed_for_a_target_precision():
    from stats.evidence import plan_votes, votes_needed

    assert votes_needed(0.5, 0.05) == math.ceil((1.959964 * 0.5 / 0.05) ** 2)  # 385
    anytime = votes_needed(0.5, 0.05, anytime=True)
    assert 385 < anytime < 1000, "looking as it goes costs more than one look, less than twice as much here"
    rng = np.random.default_rng(3)  # about half of such studies are within +-5 points by then
    within = [
        confidence_sequence((rng.random(anytime) < 0.5).astype(float), planned_n=1000).half_width <= 0.05
        for _ in range(40)
    ]
    assert 0.25 <= sum(within) / 40 <= 0.85
    plan = plan_votes(3, (0.5, 0.2, 0.3), 0.05, seconds_per_vote=60, pay_per_hour=12, agreement=0.75)
    alone = plan_votes(3, (0.5, 0.2, 0.3), 0.05, seconds_per_vote=60, pay_per_hour=12)
    assert plan.votes == 3 * plan.per_baseline and plan.hours == pytest.approx(plan.votes / 60)
    assert plan.cost == pytest.approx(plan.hours * 12) and plan.votes < 0.7 * alone.votes


def test_style_control_takes_out_a_taste_for_lists_and_length():
    """A judge that prefers whichever answer has more list items and more words, whatever the
    answers' quality: counted, it flatters the list-happy candidate; controlled, it is back near
    the truth, and the list effect is the one reported as large."""
    from stats.evidence import style_controlled_win_rate

    rng = np.random.default_rng(8)
    n = 3000
    quality = rng.random(n) < 0.5  # the truth: a 50% win rate
    cand = {
        "length": rng.integers(50, 400, n),
        "headers": np.zeros(n),
        "lists": rng.integers(0, 8, n),
        "bold": rng.integers(0, 3, n),
    }
    base = {
        "length": rng.integers(50, 400, n),
        "headers": np.zeros(n),
        "lists": rng.integers(0, 4, n),
        "bold": rng.integers(0, 3, n),
    }
    z = np.array([(a - b) / (a + b) if a + b else 0.0 for a, b in zip(cand["lists"], base["lists"], strict=True)])
    logit = np.where(quality, 1.0, -1.0) + 2.5 * z
    outcomes = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(float)
    sc = style_controlled_win_rate(outcomes, cand, base)
    assert sc.raw > 0.58, "the counted win rate is flattered by the lists"
    assert sc.controlled == pytest.approx(0.5, abs=0.03)
    assert set(sc.effects) == {"length", "lists", "bold"}, "no headers anywhere: nothing to say about them"
    assert sc.effects["lists"][0] > 0.1 and abs(sc.effects["length"][0]) < 0.03
    flat = style_controlled_win_rate([1.0, 0.0] * 5, {k: [1] * 10 for k in cand}, {k: [1] * 10 for k in cand})
    assert (flat.raw, flat.controlled, flat.effects) == (0.5, None, {})
