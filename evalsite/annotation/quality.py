"""Quality control and agreement for a study, computed from the database."""

from __future__ import annotations

from collections import defaultdict
from statistics import median

from django.conf import settings
from django.db.models.functions import Length

from evalsite.annotation.models import HumanJudgment, Outcome, Study
from stats.agreement import pairwise
from stats.reliability import dawid_skene

CHARS_PER_WORD = 6  # an English word and its space, about


def reading_floor(chars: int) -> float:
    """The fewest seconds in which a page of ``chars`` characters (the prompt and both answers)
    can be read at READING_WORDS_PER_MINUTE."""
    return chars / CHARS_PER_WORD / settings.READING_WORDS_PER_MINUTE * 60


def with_page_chars(judgments):
    """The judgments annotated with ``page_chars``: the characters of both answers on their page
    (the prompt adds little and lives in JSON)."""
    return judgments.annotate(
        page_chars=Length("comparison__candidate_response__text") + Length("comparison__baseline_response__text")
    )


def faster_than_reading(seconds: list[float], chars: list[int]) -> tuple[float | None, bool]:
    """The median reading floor of these pages, and whether the median time is below it."""
    if not seconds:
        return None, False
    floor = median(reading_floor(c or 0) for c in chars)
    return floor, median(seconds) < floor


def annotator_quality(study: Study) -> list[dict]:
    """Per annotator: judgments, gold accuracy, Dawid-Skene reliability, median seconds, too-fast
    count, whether their median time is below the reading floor of their pages, share of left
    picks."""
    rows = with_page_chars(HumanJudgment.objects.filter(comparison__study=study)).values_list(
        "annotator__username",
        "annotator_id",
        "outcome",
        "picked_side",
        "seconds",
        "comparison__is_gold",
        "comparison__gold_better",
        "comparison_id",
        "page_chars",
    )
    reliability = annotator_reliability([(r[7], r[0], r[2]) for r in rows])
    per: dict[str, dict] = defaultdict(
        lambda: {"seconds": [], "chars": [], "gold": 0, "gold_right": 0, "left": 0, "sided": 0}
    )
    ids = {}
    for name, uid, outcome, side, seconds, is_gold, gold_better, _, chars in rows:
        d = per[name]
        ids[name] = uid
        d["seconds"].append(seconds)
        d["chars"].append(chars)
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
        floor, too_fast_to_read = faster_than_reading(d["seconds"], d["chars"])
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
                "reading_floor": floor,
                "faster_than_reading": too_fast_to_read,
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
    return {str(name): value for name, value in fit.accuracy.items() if name in shared}


def study_agreement(study: Study, include_excluded: bool = False) -> dict:
    """Tie-discounted accuracy and kappas on comparisons with two or more judgments (gold
    checks left out: they measure attention, not preference)."""
    judgments = HumanJudgment.objects.filter(comparison__study=study, comparison__is_gold=False)
    if not include_excluded:
        judgments = judgments.exclude(annotator__in=study.excluded.all())
    triples = judgments.values_list("comparison_id", "annotator__username", "outcome")
    return pairwise(triples)
