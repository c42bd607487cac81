"""Each annotator's reliability from the votes alone: the Dawid & Skene (1979) model.

Every item has an unknown true label k (drawn with the study's priors); annotator j reports label
l with probability pi_j[k, l] (their confusion matrix). Expectation-maximisation alternates the
items' posterior labels given the matrices and the matrices given the posteriors, starting from
each item's vote shares. An annotator's reliability is the chance they report the true label,
sum_k prior_k pi_j[k, k]. No library on PyPI we could find is maintained for this and small
(crowd-kit pulls pandas and a pinned scikit-learn); the model is forty lines of numpy, tested on
simulated votes with known accuracies (tests/test_stats_reliability.py)."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class DawidSkene:
    labels: list[str]
    priors: dict[str, float]
    accuracy: dict[Hashable, float]  # per annotator: the chance of reporting the true label
    confusion: dict[Hashable, list[list[float]]]  # per annotator: [true label][reported label]
    posteriors: dict[Hashable, dict[str, float]]  # per item
    iterations: int


def dawid_skene(
    votes: Sequence[tuple[Hashable, Hashable, str]],
    labels: Sequence[str],
    max_iterations: int = 200,
    tolerance: float = 1e-7,
    smoothing: float = 0.01,
) -> DawidSkene:
    """Fit the model on (item, annotator, label) votes. ``smoothing`` is a pseudo-count added to
    every cell of every confusion matrix (an annotator seen on few items is not certain)."""
    if not votes:
        raise ValueError("no votes to fit")
    label_index = {label: k for k, label in enumerate(labels)}
    unknown = sorted({v[2] for v in votes} - set(label_index))
    if unknown:
        raise ValueError(f"labels not in {list(labels)}: {unknown}")
    items = list(dict.fromkeys(v[0] for v in votes))
    annotators = list(dict.fromkeys(v[1] for v in votes))
    item_of = {item: i for i, item in enumerate(items)}
    annotator_of = {a: j for j, a in enumerate(annotators)}
    item = np.array([item_of[v[0]] for v in votes])
    annotator = np.array([annotator_of[v[1]] for v in votes])
    label = np.array([label_index[v[2]] for v in votes])
    n, m, k = len(items), len(annotators), len(labels)

    posterior = np.full((n, k), smoothing)  # start: each item's vote shares
    np.add.at(posterior, (item, label), 1.0)
    posterior /= posterior.sum(1, keepdims=True)
    iterations = 0
    while iterations < max_iterations:
        iterations += 1
        priors = posterior.mean(0)
        counts = np.full((m, k, k), smoothing)  # [annotator, true, reported]
        for true in range(k):  # counts[j, true, l] += the posterior of `true` on each of j's l votes
            np.add.at(counts[:, true, :], (annotator, label), posterior[item, true])
        confusion = counts / counts.sum(2, keepdims=True)
        log_post = np.tile(np.log(priors), (n, 1))
        np.add.at(log_post, item, np.log(confusion[annotator, :, label]))
        log_post -= log_post.max(1, keepdims=True)
        updated = np.exp(log_post)
        updated /= updated.sum(1, keepdims=True)
        change = float(np.abs(updated - posterior).max())
        posterior = updated
        if change < tolerance:
            break
    priors = posterior.mean(0)
    accuracy = np.einsum("k,jkk->j", priors, confusion)
    return DawidSkene(
        labels=list(labels),
        priors={lab: float(priors[i]) for i, lab in enumerate(labels)},
        accuracy={a: float(accuracy[j]) for a, j in annotator_of.items()},
        confusion={a: confusion[j].tolist() for a, j in annotator_of.items()},
        posteriors={it: {lab: float(posterior[i, c]) for c, lab in enumerate(labels)} for it, i in item_of.items()},
        iterations=iterations,
    )
