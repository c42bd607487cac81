"""What differs between the two kinds of study, one object each (as judging/rating_kinds.py does
for the judge's rating kinds), so that code asks what a study's kind can do instead of testing
``study.kind`` where it happens to need it:

- pairwise (the paper's Figures 1 and 2): a candidate against baselines, people pick A, B or
  neither, one comparison at a time;
- rating (Figure 3): the candidate's answers graded Excellent / Pass / Fail, one at a time;
- ranking: many systems, any two of them on one prompt, the pairwise page and choices; ranked
  with rank-sets (evalsite/dashboard/ranking.py) instead of Figures 1 and 2;
- arena: a ranking whose prompts people bring (evalsite/arena/): two anonymous systems answer
  each, the person votes, each vote becomes a comparison of the same ranking.

Adding a kind: a ``Study.Kind`` value, how its items are made (studies.start_study) and answered,
and one ``StudyKind`` here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from django.contrib.auth.models import User

from evalsite.annotation import claims, rating
from evalsite.annotation.models import HumanJudgment, HumanRating, Study


@dataclass(frozen=True)
class StudyKind:
    value: str
    items: str  # what people answer, plural: "comparisons", "responses to grade"
    page: str  # the annotator's page: a URL name that takes the study's name
    figures: str  # the subject its figures are drawn for (core.figures.SUBJECTS)
    pairs: bool  # its items are pairs: crowd links, gold pairs and judge jobs serve it
    progress: Callable[[Study, User], tuple[int, int]]  # (done, left) of one annotator
    counts: Callable[[Study], dict[str, int]] | None = None  # extra counts for the staff's study page
    ranked: bool = False  # its pairs rank many systems (the ranking page) rather than a candidate against baselines


def _judged(study: Study, user: User) -> int:
    return HumanJudgment.objects.filter(comparison__study=study, annotator=user).count()


def _pairwise_progress(study: Study, user: User) -> tuple[int, int]:
    return _judged(study, user), claims.left_for(study, user)


def _arena_progress(study: Study, user: User) -> tuple[int, int]:
    """Votes counted, and an arena has always more: a person brings prompts as long as it is open.
    The arena app puts its own in its place when it is ready (battles voted, counted or waiting
    for review: evalsite.arena.services.progress)."""
    return _judged(study, user), claims.LEFT_CAP


def _rating_progress(study: Study, user: User) -> tuple[int, int]:
    return HumanRating.objects.filter(item__study=study, annotator=user).count(), rating.left_for(study, user)


def _rating_counts(study: Study) -> dict[str, int]:
    return {"items": study.rating_items.count(), "grades": HumanRating.objects.filter(item__study=study).count()}


KINDS: dict[str, StudyKind] = {
    Study.Kind.PAIRWISE: StudyKind(
        Study.Kind.PAIRWISE, "comparisons", "annotation:next", "study", True, _pairwise_progress
    ),
    Study.Kind.RATING: StudyKind(
        Study.Kind.RATING,
        "responses to grade",
        "annotation:rate",
        "rating study",
        False,
        _rating_progress,
        _rating_counts,
    ),
    Study.Kind.ARENA: StudyKind(
        Study.Kind.ARENA, "battles", "arena:home", "ranking study", True, _arena_progress, ranked=True
    ),
    Study.Kind.RANKING: StudyKind(
        Study.Kind.RANKING, "comparisons", "annotation:next", "ranking study", True, _pairwise_progress, ranked=True
    ),
}


def study_kind(study: Study) -> StudyKind:
    return KINDS[study.kind]
