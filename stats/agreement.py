"""Agreement between annotators (people or a judge).

Labels are outcomes of one comparison: "candidate", "baseline" or "tie" (any hashable works).
The paper's measure is the tie-discounted accuracy: 1 when two labels agree, 0.5 when exactly
one of them is a tie, 0 otherwise (crowd-crowd 82%, crowd-author 81%, author-author 78%)."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Hashable, Iterable, Sequence
from itertools import combinations

TIE = "tie"


def tie_discounted_score(a: Hashable, b: Hashable, tie: Hashable = TIE) -> float:
    if a == b:
        return 1.0
    if (a == tie) != (b == tie):
        return 0.5
    return 0.0


def tie_discounted_accuracy(pairs: Iterable[tuple[Hashable, Hashable]], tie: Hashable = TIE) -> float | None:
    scores = [tie_discounted_score(a, b, tie) for a, b in pairs]
    return sum(scores) / len(scores) if scores else None


def cohen_kappa(a: Sequence[Hashable], b: Sequence[Hashable]) -> float | None:
    """Cohen's kappa for two raters over the same items (None when undefined)."""
    if len(a) != len(b):
        raise ValueError("both raters must label the same items")
    n = len(a)
    if n == 0:
        return None
    observed = sum(x == y for x, y in zip(a, b, strict=True)) / n
    count_a, count_b = Counter(a), Counter(b)
    expected = sum(count_a[k] * count_b[k] for k in set(count_a) | set(count_b)) / (n * n)
    if expected == 1:
        return None  # both raters always used one label: kappa is undefined
    return (observed - expected) / (1 - expected)


def fleiss_kappa(items: Iterable[Sequence[Hashable]]) -> float | None:
    """Fleiss' kappa over items each labelled by two or more raters (the number of raters may
    vary per item; items with fewer than two labels are skipped)."""
    rows = [Counter(labels) for labels in items if len(labels) >= 2]
    if not rows:
        return None
    totals: Counter = Counter()
    per_item = []
    n_labels = 0
    for row in rows:
        n = sum(row.values())
        per_item.append(sum(c * (c - 1) for c in row.values()) / (n * (n - 1)))
        totals.update(row)
        n_labels += n
    p_bar = sum(per_item) / len(per_item)
    p_e = sum((c / n_labels) ** 2 for c in totals.values())
    if p_e == 1:
        return None
    return (p_bar - p_e) / (1 - p_e)


def pairwise(judgments: Iterable[tuple[Hashable, Hashable, Hashable]]) -> dict:
    """From (item, rater, label) triples: tie-discounted accuracy and Cohen's kappa over all pairs
    of raters who labelled the same item, overall and per pair of raters, and Fleiss' kappa."""
    by_item: dict[Hashable, dict[Hashable, Hashable]] = defaultdict(dict)
    for item, rater, label in judgments:
        by_item[item][rater] = label
    pairs: dict[tuple, list[tuple[Hashable, Hashable]]] = defaultdict(list)
    for labels in by_item.values():
        for r1, r2 in combinations(sorted(labels, key=str), 2):
            pairs[(r1, r2)].append((labels[r1], labels[r2]))
    all_pairs = [p for ps in pairs.values() for p in ps]
    per_pair = {
        key: {
            "n": len(ps),
            "tie_discounted_accuracy": tie_discounted_accuracy(ps),
            "cohen_kappa": cohen_kappa([x for x, _ in ps], [y for _, y in ps]),
        }
        for key, ps in sorted(pairs.items(), key=lambda kv: (str(kv[0][0]), str(kv[0][1])))
    }
    return {
        "items": sum(1 for labels in by_item.values() if len(labels) >= 2),
        "pairs": len(all_pairs),
        "tie_discounted_accuracy": tie_discounted_accuracy(all_pairs),
        "cohen_kappa": cohen_kappa([x for x, _ in all_pairs], [y for _, y in all_pairs]) if all_pairs else None,
        "fleiss_kappa": fleiss_kappa([list(labels.values()) for labels in by_item.values()]),
        "per_pair": per_pair,
    }

