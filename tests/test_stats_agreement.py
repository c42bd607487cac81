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
