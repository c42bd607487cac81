"""How well a study knows each baseline's win share from its people's votes alone: the counts
(a GROUP BY over the comparisons' vote counters, never a scan of judgments), and the confidence
sequence one may look at after every vote (stats.evidence.confidence_sequence: betting, valid at
every look in finite samples). Whether a study has enough, with the judge's help where it has one,
is decided in one place: evalsite/dashboard/stopping.py.

What counts is fixed before looking: a comparison counts once it has all ``study.overlap`` of its
votes (``completed_at``), by its people's majority (a draw is a tie), and the sequence takes the
comparisons in the order they were completed. Counted at its first vote, a comparison of three
votes would count two split votes as a tie (a win share of 0.45 read as 0.36)."""

from __future__ import annotations

import numpy as np
from django.db.models import Count, F, Q

from evalsite.annotation.models import Comparison, Study
from evalsite.core.columns import fetch_columns
from stats.evidence import confidence_sequence, cs_planned_n
from stats.intervals import clopper_pearson

VOTED = Q(votes_candidate__gt=0) | Q(votes_baseline__gt=0) | Q(votes_tie__gt=0)
COMPLETE = Q(completed_at__isnull=False)
CANDIDATE_MAJORITY = Q(votes_candidate__gt=F("votes_baseline")) & Q(votes_candidate__gt=F("votes_tie"))


def complete_sequences(study: Study) -> dict[int, np.ndarray]:
    """Per baseline id: 1 where the candidate won the people's majority, else 0, for every complete
    comparison in the order it was completed (what the confidence sequence reads)."""
    col = fetch_columns(
        {"baseline": "baseline_id", "c": "votes_candidate", "b": "votes_baseline", "t": "votes_tie"},
        "FROM annotation_comparison WHERE study_id = %s AND NOT is_gold AND completed_at IS NOT NULL",
        "completed_at, id",
        [study.pk],
    )
    won = ((col["c"] > col["b"]) & (col["c"] > col["t"])).astype(float)
    return {int(pk): won[col["baseline"] == pk] for pk in np.unique(col["baseline"])}


def baseline_precision(study: Study, level: float = 0.95, sequences: bool = True) -> list[dict]:
    """Per baseline: its comparisons, those with any vote (``voted``) and those with all their
    votes (``n``, the ones that count), the candidate's win share over those, and its interval:
    with ``sequences`` the anytime-valid one (betting; tuned for the baseline's comparisons, fixed
    before the data), else the exact one-look interval (cheap: what adaptive assignment compares)."""
    rows = (
        Comparison.objects.filter(study=study, is_gold=False)
        .values("baseline_id", "baseline__name")
        .annotate(
            total=Count("id"),
            voted=Count("id", filter=VOTED),
            complete_=Count("id", filter=COMPLETE),
            won=Count("id", filter=COMPLETE & CANDIDATE_MAJORITY),
        )
        .order_by("baseline__name")
    )
    ordered = complete_sequences(study) if sequences else {}
    return [
        precision_row(
            row["baseline__name"],
            row["baseline_id"],
            row["total"],
            row["voted"],
            ordered.get(row["baseline_id"]) if sequences else None,
            row["won"],
            row["complete_"],
            level,
        )
        for row in rows
    ]


def precision_row(
    name: str, baseline_id: int, total: int, voted: int, sequence, won: int, n: int, level: float = 0.95
) -> dict:
    """One baseline's line of ``baseline_precision``: from its counts and, for the anytime-valid
    interval, its complete comparisons' 1 (the candidate's majority) or 0 in the order they were
    completed (``sequence``; None: the exact one-look interval instead)."""
    share = won / n if n else None
    low = high = None
    if n:
        if sequence is not None:
            e = confidence_sequence(sequence, planned_n=cs_planned_n(total), alpha=1 - level)
            low, high = e.low, e.high
        else:
            low, high = clopper_pearson(won, n, level)
    return {
        "baseline": name,
        "baseline_id": baseline_id,
        "n": n,
        "voted": voted,
        "partial": voted - n,
        "comparisons": total,
        "win": share,
        "half_width": (high - low) / 2 if low is not None and high is not None else float("inf"),
        "low": low,
        "high": high,
    }
