"""Quality control and agreement for a study, computed from the database."""

from __future__ import annotations

from collections import defaultdict
from statistics import median

from evalsite.annotation.models import HumanJudgment, Study
from stats.agreement import pairwise


def annotator_quality(study: Study) -> list[dict]:
    """Per annotator: judgments, gold accuracy, median seconds, too-fast count, share of left picks."""
    rows = HumanJudgment.objects.filter(comparison__study=study).values_list(
        "annotator__username",
        "annotator_id",
        "outcome",
        "picked_side",
        "seconds",
        "comparison__is_gold",
        "comparison__gold_better",
    )
    per: dict[str, dict] = defaultdict(lambda: {"seconds": [], "gold": 0, "gold_right": 0, "left": 0, "sided": 0})
    ids = {}
    for name, uid, outcome, side, seconds, is_gold, gold_better in rows:
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
                "median_seconds": median(d["seconds"]),
                "too_fast": sum(s < study.too_fast_seconds for s in d["seconds"]),
                "left_share": d["left"] / d["sided"] if d["sided"] else None,
                "excluded": ids[name] in excluded,
            }
        )
    return result


def study_agreement(study: Study, include_excluded: bool = False) -> dict:
    """Tie-discounted accuracy and kappas on comparisons with two or more judgments (gold
    checks left out: they measure attention, not preference)."""
    judgments = HumanJudgment.objects.filter(comparison__study=study, comparison__is_gold=False)
    if not include_excluded:
        judgments = judgments.exclude(annotator__in=study.excluded.all())
    triples = judgments.values_list("comparison_id", "annotator__username", "outcome")
    return pairwise(triples)
