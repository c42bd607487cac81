"""Dawid-Skene on simulated votes: it recovers the annotators' accuracies and the items' labels."""

import random

import pytest

from stats.reliability import dawid_skene

LABELS = ["candidate", "baseline", "tie"]


def simulate(accuracies: list[float], items: int, per_item: int, seed: int):
    """Votes on items with true labels drawn 50/30/20; annotator j reports the truth with its
    accuracy, else one of the other two labels at random. Returns the votes, the truths and each
    annotator's realised accuracy on the votes they cast."""
    rng = random.Random(seed)
    truth = {i: rng.choices(LABELS, weights=[0.5, 0.3, 0.2])[0] for i in range(items)}
    votes, right, cast = [], [0] * len(accuracies), [0] * len(accuracies)
    for i, true in truth.items():
        for j in rng.sample(range(len(accuracies)), per_item):
            said = true if rng.random() < accuracies[j] else rng.choice([x for x in LABELS if x != true])
            votes.append((i, f"ann{j}", said))
            right[j] += said == true
            cast[j] += 1
    return votes, truth, [r / c for r, c in zip(right, cast, strict=True)]


def test_it_recovers_known_accuracies_within_five_points():
    accuracies = [0.95, 0.9, 0.85, 0.8, 0.7, 0.6, 0.5, 0.4]
    votes, truth, realised = simulate(accuracies, items=600, per_item=4, seed=7)
    fit = dawid_skene(votes, LABELS)
    for j, (wanted, seen) in enumerate(zip(accuracies, realised, strict=True)):
        got = fit.accuracy[f"ann{j}"]
        assert abs(got - seen) < 0.05, (j, got, seen, wanted)
    assert fit.priors["candidate"] == pytest.approx(0.5, abs=0.05)
    # the posterior labels beat the plain majority over the same votes
    decided = {i: max(p, key=p.get) for i, p in fit.posteriors.items()}
    assert sum(decided[i] == t for i, t in truth.items()) / len(truth) > 0.9


def test_a_spammer_who_always_says_tie_is_found_out():
    votes, _, _ = simulate([0.9, 0.85, 0.8, 0.75], items=300, per_item=3, seed=3)
    spam = [(i, "spammer", "tie") for i in range(0, 300, 2)]
    fit = dawid_skene(votes + spam, LABELS)
    assert fit.accuracy["spammer"] < 0.35 < min(fit.accuracy[f"ann{j}"] for j in range(4))
    assert fit.confusion["spammer"][0][2] > 0.9, "reports tie whatever the truth"


def test_bad_input_is_refused_naming_what_is_wrong():
    with pytest.raises(ValueError, match="no votes"):
        dawid_skene([], LABELS)
    with pytest.raises(ValueError, match=r"labels not in .*: \['maybe'\]"):
        dawid_skene([(1, "a", "maybe")], LABELS)
