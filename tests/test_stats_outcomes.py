import numpy as np
import pytest

from stats.agreement import pairwise
from stats.outcomes import (
    bradley_terry,
    bradley_terry_intervals,
    combine_orders,
    fleiss_from_patterns,
    majority,
    tie_discounted_from_patterns,
    win_tie_loss,
)


def test_majority_breaks_draws_to_tie():
    assert majority((2, 1, 0)) == "candidate"
    assert majority((0, 2, 1)) == "baseline"
    assert majority((1, 1, 1)) == "tie"
    assert majority((1, 1, 0)) == "tie"
    assert majority((0, 0, 1)) == "tie"


def test_win_tie_loss_by_hand():
    # 4 prompts, one annotator each: 2 wins, 1 tie, 1 loss
    shares = win_tie_loss({(1, 0, 0): 2, (0, 0, 1): 1, (0, 1, 0): 1})
    assert (shares.n, shares.win, shares.tie, shares.loss) == (4, 0.5, 0.25, 0.25)
    # 2 prompts, three annotators: majority gives 1 win, 1 tie; all votes gives 3/6, 2/6, 1/6
    patterns = {(2, 1, 0): 1, (1, 0, 2): 1}
    assert win_tie_loss(patterns, "majority").as_dict()["win"] == 0.5
    everything = win_tie_loss(patterns, "all")
    assert (everything.win, everything.tie, everything.loss, everything.votes) == (
        pytest.approx(0.5),
        pytest.approx(1 / 3),
        pytest.approx(1 / 6),
        6,
    )


def test_intervals_cover_the_true_share_about_95_percent_of_the_time_or_more():
    rng = np.random.default_rng(2023)
    truth = np.array([0.44, 0.21, 0.35])  # DaVinci003 in Figure 1
    covered_win = covered_loss = 0
    studies = 300
    for _ in range(studies):
        votes = rng.multinomial(300, truth)
        shares = win_tie_loss({(1, 0, 0): votes[0], (0, 0, 1): votes[1], (0, 1, 0): votes[2]})
        covered_win += shares.win_ci[0] <= truth[0] <= shares.win_ci[1]
        covered_loss += shares.loss_ci[0] <= truth[2] <= shares.loss_ci[1]
    assert 0.93 <= covered_win / studies <= 0.995
    assert 0.93 <= covered_loss / studies <= 0.995


def test_the_interval_narrows_with_more_prompts():
    small = win_tie_loss({(1, 0, 0): 15, (0, 1, 0): 15})
    large = win_tie_loss({(1, 0, 0): 150, (0, 1, 0): 150})
    assert (large.win_ci[1] - large.win_ci[0]) < (small.win_ci[1] - small.win_ci[0]) / 2


def test_tie_discounted_accuracy_and_fleiss_from_patterns_match_the_pairwise_computation():
    patterns = {(2, 0, 1): 3, (1, 1, 1): 2, (0, 3, 0): 1, (1, 0, 0): 4}
    triples, item = [], 0
    for (c, b, t), count in patterns.items():
        for _ in range(count):
            labels = ["candidate"] * c + ["baseline"] * b + ["tie"] * t
            triples += [(item, f"r{k}", label) for k, label in enumerate(labels)]
            item += 1
    reference = pairwise(triples)
    accuracy, pairs = tie_discounted_from_patterns(patterns)
    assert accuracy == pytest.approx(reference["tie_discounted_accuracy"]) and pairs == reference["pairs"]
    assert fleiss_from_patterns(patterns) == pytest.approx(reference["fleiss_kappa"])


def test_combining_the_judges_two_orders():
    assert combine_orders("candidate", "candidate", "tie") == "candidate"
    assert combine_orders("candidate", "baseline", "tie") == "tie"
    assert combine_orders("candidate", "baseline", "drop") is None
    assert combine_orders("", "baseline", "tie") == "baseline", "a failed order leaves the other"
    assert combine_orders("", "", "tie") is None, "never a tie from failures"


def test_bradley_terry_recovers_the_order_of_simulated_systems():
    rng = np.random.default_rng(7)
    true = {"gpt-4": 1.5, "claude": 1.0, "bard": 0.3, "davinci": 0.0, "alpaca": -0.8}
    names = list(true)
    rows = []
    for _ in range(3000):
        a, b = rng.choice(len(names), 2, replace=False)
        p = 1 / (1 + np.exp(true[names[b]] - true[names[a]]))
        rows.append((names[a], names[b], "win" if rng.random() < p else "loss"))
    fitted = bradley_terry_intervals(rows, bootstrap=100)
    assert sorted(fitted, key=lambda n: fitted[n][0], reverse=True) == names
    spread = fitted["gpt-4"][0] - fitted["alpaca"][0]
    assert spread == pytest.approx(2.3, abs=0.4)
    assert all(low <= value <= high for value, low, high in fitted.values())


def test_bradley_terry_counts_ties_half():
    strengths = bradley_terry({("a", "b"): 5, ("b", "a"): 5})
    assert strengths["a"] == pytest.approx(strengths["b"], abs=1e-6)
