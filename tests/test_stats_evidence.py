"""stats/evidence.py against hand-computed cases, the papers' formulas and small simulations."""

import math

import numpy as np
import pytest

from stats.evidence import (
    active_probabilities,
    classical_mean,
    confidence_sequence,
    cs_half_width,
    cs_rho,
    judge_assisted_mean,
    length_controlled_win_rate,
    logistic_fit,
    power_tuning,
    ppi_mean,
    sampled_terms,
    sampling_probabilities,
    walked,
)


def test_the_people_only_interval_by_hand():
    e = classical_mean([1, 0, 1, 1])
    # mean 0.75, sample sd 0.5, n 4: 1.96 * 0.5 / 2
    assert (e.value, e.n, e.lam) == (0.75, 4, 0.0)
    assert e.half_width == pytest.approx(1.959964 * 0.25, rel=1e-5)


def test_ppi_is_the_papers_estimator_and_its_variance():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 50).astype(float)
    f_l = np.clip(y * 0.7 + rng.random(50) * 0.3, 0, 1)
    f_u = rng.random(400)
    lam = 0.6
    e = ppi_mean(y, f_l, f_u, lam=lam)
    # Angelopoulos et al. 2023, with PPI++'s lambda: theta = lam mean(f_u) + mean(y - lam f_l)
    theta = lam * f_u.mean() + (y - lam * f_l).mean()
    sd = math.sqrt(lam**2 * f_u.var(ddof=1) / 400 + (y - lam * f_l).var(ddof=1) / 50)
    assert e.value == pytest.approx(theta)
    assert e.half_width == pytest.approx(1.959964 * sd, rel=1e-5)
    # no weight on the judge: the people-only estimate, exactly
    alone = ppi_mean(y, f_l, f_u, lam=0.0)
    assert (alone.value, alone.half_width) == pytest.approx((classical_mean(y).value, classical_mean(y).half_width))


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
    assert good.half_width < 0.75 * people.half_width
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


def test_a_confidence_sequence_holds_at_every_look_where_repeated_fixed_intervals_do_not():
    rng = np.random.default_rng(5)
    rho = cs_rho(300)
    looks = range(20, 1001, 10)
    cs_missed = fixed_missed = 0
    for _ in range(200):
        x = (rng.random(1000) < 0.5).astype(float)
        cs_out = fixed_out = False
        for n in looks:
            mean, sd = x[:n].mean(), x[:n].std(ddof=1)
            cs_out |= abs(mean - 0.5) > cs_half_width(n, sd, rho)
            fixed_out |= abs(mean - 0.5) > 1.959964 * sd / math.sqrt(n)
        cs_missed += cs_out
        fixed_missed += fixed_out
    assert cs_missed / 200 <= 0.05, "anytime-valid: the truth leaves the sequence rarely, however often one looks"
    assert fixed_missed / 200 >= 0.2, "peeking at fixed-n intervals would have misled far more often"


def test_the_confidence_sequence_by_its_formula():
    rho, n, sd = 0.1, 100, 0.5
    v = n * sd**2 * rho**2 + 1
    expected = math.sqrt(2 * v / (n**2 * rho**2) * math.log(math.sqrt(v) / 0.05))
    assert cs_half_width(n, sd, rho) == pytest.approx(expected)
    assert cs_half_width(400, sd, rho) < cs_half_width(100, sd, rho)
    e = confidence_sequence([1, 0] * 50, offset=0.1, rho=rho)
    assert e.value == pytest.approx(0.6) and e.half_width == pytest.approx(
        cs_half_width(100, np.std([1, 0] * 50, ddof=1), rho)
    )


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
    assert cs_half_width(anytime, 0.5, cs_rho(385, 0.05, 0.25)) <= 0.05 < cs_half_width(anytime - 50, 0.5, cs_rho(385))
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
