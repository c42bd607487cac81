"""How well a study knows each baseline's win share from its people's votes alone, with intervals
one may look at after every vote (confidence sequences, stats/evidence.py); and ``mark_enough``,
which stops a study from handing out new items and tells staff. Whether a study has enough is
decided in dashboard/evidence.py (``study_status``), with the judge's help where it has judged.

Each comparison counts once, by its people's majority (a draw is a tie), from the comparisons'
vote counters: a GROUP BY, never a scan of judgments."""

from __future__ import annotations

import logging
import math

from django.conf import settings
from django.core.mail import send_mail
from django.db.models import Count, F, Q
from django.utils import timezone

from evalsite.annotation.models import Comparison, Study
from stats.evidence import cs_half_width, cs_rho

log = logging.getLogger(__name__)

VOTED = Q(votes_candidate__gt=0) | Q(votes_baseline__gt=0) | Q(votes_tie__gt=0)
CANDIDATE_MAJORITY = Q(votes_candidate__gt=F("votes_baseline")) & Q(votes_candidate__gt=F("votes_tie"))


def baseline_precision(study: Study, level: float = 0.95) -> list[dict]:
    """Per baseline: the comparisons with votes (n) of all, the candidate's win share and its
    anytime-valid interval."""
    rows = (
        Comparison.objects.filter(study=study, is_gold=False)
        .values("baseline_id", "baseline__name")
        .annotate(
            total=Count("id"),
            voted=Count("id", filter=VOTED),
            won=Count("id", filter=VOTED & CANDIDATE_MAJORITY),
        )
        .order_by("baseline__name")
    )
    out = []
    for row in rows:
        n, total = row["voted"], row["total"]
        share = row["won"] / n if n else None
        rho = cs_rho(total, 1 - level)  # fixed before the data: tightest near all the comparisons
        half = math.inf
        if n > 1 and share is not None:
            half = cs_half_width(n, math.sqrt(share * (1 - share) * n / (n - 1)), rho, 1 - level)
        out.append(
            {
                "baseline": row["baseline__name"],
                "baseline_id": row["baseline_id"],
                "n": n,
                "comparisons": total,
                "win": share,
                "half_width": half,
                "low": None if share is None else max(share - half, 0.0),
                "high": None if share is None else min(share + half, 1.0),
            }
        )
    return out


def mark_enough(study: Study, rows: list[dict]) -> bool:
    """Record that the study has enough (one conditional update: told once however many callers
    see it at the same time), and tell staff by e-mail when STUDY_ENOUGH_EMAILS lists addresses."""
    now = timezone.now()
    if not Study.objects.filter(pk=study.pk, enough_at__isnull=True).update(enough_at=now):
        study.refresh_from_db(fields=["enough_at"])
        return False
    study.enough_at = now
    lines = [f"  {r['baseline']}: {r['win']:.0%} +-{r['half_width'] * 100:.1f} points over {r['n']}" for r in rows]
    log.info("study %s has enough: every win share within +-%s", study.name, study.target_half_width)
    if settings.STUDY_ENOUGH_EMAILS:
        send_mail(
            f"Study {study.name} has enough votes",
            f"Every baseline's win share is known to +-{study.target_half_width * 100:.0f} points "
            "(anytime-valid 95% intervals); the study hands out no new items.\n\n" + "\n".join(lines) + "\n",
            settings.DEFAULT_FROM_EMAIL,
            settings.STUDY_ENOUGH_EMAILS,
        )
    return True
