"""Rating studies (Figure 3): people grade one response at a time Fail / Pass / Excellent, with
the paper's definitions, ``overlap`` people per response; responses to prompts tagged ``safety``
also get a safe / unsafe answer (the paper's 30 sensitive prompts, 80% safe)."""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict

from django.db import IntegrityError, transaction
from django.db.models import F

from evalsite.annotation.models import HumanRating, RatingItem, Study
from evalsite.annotation.services import StudyError
from evalsite.catalog.models import PromptSet, Response, System
from evalsite.core.paper import SAFETY_TAG, Grade
from stats.agreement import pairwise
from stats.outcomes import label_shares

MAX_SECONDS = 3600.0


def create_rating_study(name: str, system: System, prompt_set: PromptSet, overlap: int = 1) -> Study:
    """A study of kind rating over the system's response (sample 0, no error) to every prompt."""
    if Study.objects.filter(name=name).exists():
        raise StudyError(f"a study named {name!r} exists")
    if overlap < 1:
        raise StudyError("overlap must be at least 1")
    responses = list(
        Response.objects.filter(system=system, prompt__prompt_set=prompt_set, sample_index=0, error="").order_by(
            "prompt_id"
        )
    )
    if not responses:
        raise StudyError(f"{system.name} has no responses on {prompt_set.name}: generate or import them first")
    with transaction.atomic():
        study = Study.objects.create(
            name=name, kind=Study.Kind.RATING, candidate=system, prompt_set=prompt_set, overlap=overlap, gold_rate=0.0
        )
        RatingItem.objects.bulk_create(RatingItem(study=study, response=r) for r in responses)
    return study


def next_rating_item(study: Study, user) -> RatingItem | None:
    """The item with the fewest ratings that this person has not rated and that still wants one."""
    return (
        RatingItem.objects.filter(study=study, ratings_done__lt=study.overlap)
        .exclude(ratings__annotator=user)
        .select_related("response__prompt")
        .order_by("ratings_done", "id")
        .first()
    )


def is_safety(item: RatingItem) -> bool:
    return SAFETY_TAG in (item.response.prompt.tags or [])


def submit_rating(item_id: int, user, grade: str, safe: str, seconds: float) -> tuple[RatingItem, bool]:
    """Record one person's grade (and safe / unsafe where the prompt is tagged safety): (item,
    recorded). A second submit of the same item by the same person records nothing."""
    try:
        item = RatingItem.objects.select_related("study", "response__prompt").get(pk=item_id)
    except RatingItem.DoesNotExist:
        raise StudyError(f"no rating item {item_id}") from None
    study = item.study
    if study.kind != Study.Kind.RATING or not study.annotators.filter(pk=user.pk).exists():
        raise StudyError(f"no rating item {item_id}")  # someone else's study: the same answer as none
    if study.status != Study.Status.OPEN:
        raise StudyError(f"study {study.name} is {study.status}")
    if grade not in Grade.values:
        raise StudyError(f"grade must be one of {', '.join(Grade.values)}, not {grade!r}")
    safe_value = None
    if is_safety(item):
        if safe not in ("safe", "unsafe"):
            raise StudyError("this prompt is a safety prompt: say whether the response is safe or unsafe")
        safe_value = safe == "safe"
    try:
        with transaction.atomic():
            HumanRating.objects.create(
                item=item, annotator=user, grade=grade, safe=safe_value, seconds=min(max(seconds, 0.0), MAX_SECONDS)
            )
            RatingItem.objects.filter(pk=item.pk).update(ratings_done=F("ratings_done") + 1)
    except IntegrityError:
        return item, False  # a double submit: the first one counts
    return item, True


def rating_summary(study: Study) -> dict:
    """People's grades: shares of Excellent / Pass / Fail over responses (every vote counts, the
    responses resampled for the 95% interval), agreement where two or more people graded a
    response, and the safe share on safety prompts with its interval."""
    excluded = set(study.excluded.values_list("pk", flat=True))
    rows = list(
        HumanRating.objects.filter(item__study=study)
        .exclude(annotator_id__in=excluded)
        .values_list("item_id", "annotator__username", "grade", "safe", "item__response_id", "seconds")
    )
    seconds: dict[str, list[float]] = defaultdict(list)
    per_item: dict[int, Counter] = defaultdict(Counter)
    safety: dict[int, Counter] = defaultdict(Counter)
    for item_id, name, grade, safe, _, spent in rows:
        seconds[name].append(spent)
        per_item[item_id][grade] += 1
        if safe is not None:
            safety[item_id]["safe" if safe else "unsafe"] += 1
    shares = label_shares(per_item.values(), win="excellent", loss="fail", tie="pass")
    safe = label_shares(safety.values(), win="safe", loss="unsafe") if safety else None
    agreement = pairwise((item_id, annotator, grade) for item_id, annotator, grade, *_ in rows)
    majority = {}
    for item_id, response_id in {(r[0], r[4]) for r in rows}:
        counts = per_item[item_id].most_common()
        if len(counts) == 1 or counts[0][1] > counts[1][1]:
            majority[response_id] = counts[0][0]
    return {
        "responses": shares.n,
        "ratings": len(rows),
        "excellent": shares.win,
        "pass": shares.tie,
        "fail": shares.loss,
        "excellent_ci": shares.win_ci,
        "fail_ci": shares.loss_ci,
        "agreement": agreement,
        "safe": None
        if safe is None
        else {"share": safe.win, "ci": safe.win_ci, "responses": safe.n, "ratings": safe.votes},
        "majority": majority,
        "raters": [
            {"annotator": name, "ratings": len(spent), "median_seconds": statistics.median(spent)}
            for name, spent in sorted(seconds.items())
        ],
    }
