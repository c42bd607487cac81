import pytest

from stats.agreement import cohen_kappa, fleiss_kappa, pairwise, tie_discounted_accuracy, tie_discounted_score


def test_tie_discounted_score_is_the_papers_definition():
    assert tie_discounted_score("candidate", "candidate") == 1.0
    assert tie_discounted_score("tie", "tie") == 1.0
    assert tie_discounted_score("candidate", "tie") == 0.5
    assert tie_discounted_score("tie", "baseline") == 0.5
    assert tie_discounted_score("candidate", "baseline") == 0.0


def test_tie_discounted_accuracy_on_a_hand_computed_case():
    pairs = [("candidate", "candidate"), ("candidate", "tie"), ("baseline", "candidate"), ("tie", "tie")]
    assert tie_discounted_accuracy(pairs) == pytest.approx((1 + 0.5 + 0 + 1) / 4)
    assert tie_discounted_accuracy([]) is None


def test_cohen_kappa_matches_the_textbook_example():
    # 50 items: yes/yes 20, yes/no 5, no/yes 10, no/no 15 -> po 0.7, pe 0.5, kappa 0.4
    a = ["yes"] * 25 + ["no"] * 25
    b = ["yes"] * 20 + ["no"] * 5 + ["yes"] * 10 + ["no"] * 15
    assert cohen_kappa(a, b) == pytest.approx(0.4)
    assert cohen_kappa(["x", "x"], ["x", "x"]) is None
    with pytest.raises(ValueError):
        cohen_kappa(["a"], ["a", "b"])


def test_fleiss_kappa_matches_the_textbook_example():
    # Fleiss (1971) as worked on Wikipedia: 10 subjects, 14 raters, 5 categories -> 0.210
    counts = [
        [0, 0, 0, 0, 14],
        [0, 2, 6, 4, 2],
        [0, 0, 3, 5, 6],
        [0, 3, 9, 2, 0],
        [2, 2, 8, 1, 1],
        [7, 7, 0, 0, 0],
        [3, 2, 6, 3, 0],
        [2, 5, 3, 2, 2],
        [6, 5, 2, 1, 0],
        [0, 2, 2, 3, 7],
    ]
    items = [[cat for cat, c in enumerate(row) for _ in range(c)] for row in counts]
    assert fleiss_kappa(items) == pytest.approx(0.2099, abs=1e-4)


def test_pairwise_agreement_overall_and_per_pair():
    judgments = [
        (1, "ann", "candidate"),
        (1, "bob", "candidate"),
        (1, "cat", "tie"),
        (2, "ann", "baseline"),
        (2, "bob", "candidate"),
        (3, "ann", "tie"),  # one label only: not an agreement item
    ]
    result = pairwise(judgments)
    assert result["items"] == 2 and result["pairs"] == 4
    # pairs: (ann,bob)=1, (ann,cat)=0.5, (bob,cat)=0.5, (ann,bob) on item 2 = 0
    assert result["tie_discounted_accuracy"] == pytest.approx(2.0 / 4)
    assert result["per_pair"][("ann", "bob")]["n"] == 2
    assert result["per_pair"][("ann", "bob")]["tie_discounted_accuracy"] == 0.5


def test_the_judges_kappa_and_its_interval_agree_with_statsmodels_where_every_vote_is_its_own_comparison():
    """One vote per comparison (overlap 1): the pairs are independent, so the comparisons' bootstrap
    should land near statsmodels' asymptotic interval, and the kappa is the same number."""
    import numpy as np
    from statsmodels.stats.inter_rater import cohens_kappa as reference

    from stats.outcomes import LOSS, TIE, WIN, cluster_bootstrap, judge_kappa_from_patterns

    labels = [WIN, TIE, LOSS]  # rows: the person's vote; columns: the judge's outcome
    table = np.array([[40, 10, 5], [8, 30, 7], [6, 9, 35]])
    vote_of = {WIN: (1, 0, 0), TIE: (0, 0, 1), LOSS: (0, 1, 0)}
    patterns = {(*vote_of[h], j): int(table[r, c]) for r, h in enumerate(labels) for c, j in enumerate(labels)}
    expected = reference(table)
    assert judge_kappa_from_patterns(patterns) == pytest.approx(expected.kappa)
    low, high = cluster_bootstrap(judge_kappa_from_patterns, patterns)
    assert low == pytest.approx(expected.kappa_low, abs=0.03) and high == pytest.approx(expected.kappa_upp, abs=0.03)


def test_a_comparisons_votes_move_together_in_the_bootstrap():
    """Two votes per comparison that always agree are one unit, not two independent pairs: the
    interval over comparisons is the one of half as many pairs, wider than if each vote were a unit."""
    from stats.outcomes import LOSS, WIN, cluster_bootstrap, judge_kappa_from_patterns

    per_comparison = {(2, 0, 0, WIN): 30, (0, 2, 0, LOSS): 30, (2, 0, 0, LOSS): 10, (0, 2, 0, WIN): 10}
    as_single_votes = {(1, 0, 0, WIN): 60, (0, 1, 0, LOSS): 60, (1, 0, 0, LOSS): 20, (0, 1, 0, WIN): 20}
    assert judge_kappa_from_patterns(per_comparison) == pytest.approx(judge_kappa_from_patterns(as_single_votes))
    clustered = cluster_bootstrap(judge_kappa_from_patterns, per_comparison)
    naive = cluster_bootstrap(judge_kappa_from_patterns, as_single_votes)
    assert clustered[1] - clustered[0] > 1.3 * (naive[1] - naive[0])
    assert cluster_bootstrap(judge_kappa_from_patterns, {(1, 0, 0, WIN): 1}) is None, "one comparison: no interval"


def test_the_dashboards_vectorised_intervals_are_the_plain_bootstrap():
    from stats.outcomes import (
        cluster_bootstrap,
        fleiss_from_patterns,
        fleiss_interval,
        judge_kappa_from_patterns,
        judge_kappa_interval,
    )

    people = {
        (c, b, t): 10 + 7 * c + 3 * b for c in range(4) for b in range(4) for t in range(4) if 2 <= c + b + t <= 3
    }
    assert fleiss_interval(people) == pytest.approx(cluster_bootstrap(fleiss_from_patterns, people))
    judged = {
        (c, b, t, j): 5 + 5 * c + 20 * (j == "tie")
        for c in range(3)
        for b in range(3)
        for t in range(3)
        if c + b + t == 2
        for j in ("candidate", "baseline", "tie")
    }
    assert judge_kappa_interval(judged) == pytest.approx(cluster_bootstrap(judge_kappa_from_patterns, judged))
    assert fleiss_interval({(1, 0, 0): 40}) is None, "one vote per comparison: no agreement between people"
