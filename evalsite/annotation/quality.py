"""Quality control and agreement for a study, computed from the database."""

from __future__ import annotations

from collections import defaultdict
from statistics import median

from evalsite.annotation.models import HumanJudgment, Outcome, Study
from stats.agreement import pairwise
from stats.reliability import dawid_skene


def annotator_quality(study: Study) -> list[dict]:
    """Per annotator: judgments, gold accuracy, Dawid-Skene reliability, median seconds, too-fast
    count, share of left picks."""
    rows = HumanJudgment.objects.filter(comparison__study=study).values_list(
        "annotator__username",
        "annotator_id",
        "outcome",
        "picked_side",
        "seconds",
        "comparison__is_gold",
        "comparison__gold_better",
        "comparison_id",
    )
    reliability = annotator_reliability([(r[7], r[0], r[2]) for r in rows])
    per: dict[str, dict] = defaultdict(lambda: {"seconds": [], "gold": 0, "gold_right": 0, "left": 0, "sided": 0})
    ids = {}
    for name, uid, outcome, side, seconds, is_gold, gold_better, _ in rows:
        d = per[name]
        ids[name] = uid
        d["seconds"].append(seconds)
        if is_gold:
            d["gold"] += 1
            d["gold_right"] += outcome == gold_better
        if side in ("left", "right"):
            d["sided"] += 1
            d["left"] += side == "left"
    excluded = set(study.excluded.values_list("pk", flat=True))
    result = []
    for name in sorted(per):
        d = per[name]
        result.append(
            {
                "annotator": name,
                "user_id": ids[name],
                "judgments": len(d["seconds"]),
                "gold": d["gold"],
                "gold_accuracy": d["gold_right"] / d["gold"] if d["gold"] else None,
                "reliability": reliability.get(name),
                "median_seconds": median(d["seconds"]),
                "too_fast": sum(s < study.too_fast_seconds for s in d["seconds"]),
                "left_share": d["left"] / d["sided"] if d["sided"] else None,
                "excluded": ids[name] in excluded,
            }
        )
    return result


def annotator_reliability(votes: list[tuple[int, str, str]]) -> dict[str, float]:
    """Each annotator's Dawid-Skene reliability over the study's votes (comparison, annotator,
    outcome); none where no comparison has two votes (one vote per item says nothing of who is
    right) or for an annotator who shares no comparison with anyone."""
    voters: dict[int, set[str]] = defaultdict(set)
    for comparison, name, _ in votes:
        voters[comparison].add(name)
    shared = {name for names in voters.values() if len(names) > 1 for name in names}
    if not shared:
        return {}
    fit = dawid_skene(votes, [o.value for o in Outcome])
    return {name: value for name, value in fit.accuracy.items() if name in shared}


def study_agreement(study: Study, include_excluded: bool = False) -> dict:
    """Tie-discounted accuracy and kappas on comparisons with two or more judgments (gold
    checks left out: they measure attention, not preference)."""
    judgments = HumanJudgment.objects.filter(comparison__study=study, comparison__is_gold=False)
    if not include_excluded:
        judgments = judgments.exclude(annotator__in=study.excluded.all())
    triples = judgments.values_list("comparison_id", "annotator__username", "outcome")
    return pairwise(triples)
