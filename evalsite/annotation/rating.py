"""Rating studies (Figure 3): people grade one response at a time Fail / Pass / Excellent, with
the paper's definitions, ``overlap`` people per response; responses to prompts tagged ``safety``
also get a safe / unsafe answer (the paper's 30 sensitive prompts, 80% safe)."""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from evalsite.annotation.models import HumanRating, RatingClaim, RatingItem, Study
from evalsite.annotation.studies import StudyError
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


def release_expired_ratings(study: Study) -> int:
    """Rating claims past their time give their slot back."""
    released = 0
    expired = RatingClaim.objects.filter(study=study, status=RatingClaim.Status.CLAIMED, expires_at__lt=timezone.now())
    for pk, item_id in expired.values_list("pk", "item_id"):
        claimed = RatingClaim.objects.filter(pk=pk, status=RatingClaim.Status.CLAIMED)
        if claimed.update(status=RatingClaim.Status.EXPIRED):
            RatingItem.objects.filter(pk=item_id, slots_taken__gt=0).update(slots_taken=F("slots_taken") - 1)
            released += 1
    return released


def left_for(study: Study, user) -> int:
    """The items this person may still grade: free slots they have not claimed, and the one they hold."""
    unseen = RatingItem.objects.filter(study=study, slots_taken__lt=study.overlap).exclude(claims__annotator=user)
    held = RatingClaim.objects.filter(study=study, annotator=user, status=RatingClaim.Status.CLAIMED).exists()
    return unseen.count() + held


def claim_rating_item(study: Study, user) -> RatingItem | None:
    """The item this person is rating (their open claim), or a new one: the item with the fewest
    slots taken that they have not rated or claimed, its slot taken with one conditional UPDATE so
    that no item goes past the study's overlap however many people claim at once. None when
    nothing is left for them. The database holds one open claim per person and study."""
    if study.status != Study.Status.OPEN:
        raise StudyError(f"study {study.name} is {study.status}")
    mine = RatingClaim.objects.filter(study=study, annotator=user, status=RatingClaim.Status.CLAIMED)
    if claim := mine.select_related("item__response__prompt").first():
        return claim.item
    release_expired_ratings(study)
    now = timezone.now()
    candidates = (
        RatingItem.objects.filter(study=study, slots_taken__lt=study.overlap)
        .exclude(claims__annotator=user)
        .order_by("slots_taken", "id")
        .values_list("pk", flat=True)
    )
    for pk in list(candidates[:25]):
        try:
            with transaction.atomic():
                if not RatingItem.objects.filter(pk=pk, slots_taken__lt=study.overlap).update(
                    slots_taken=F("slots_taken") + 1
                ):
                    continue  # someone else took its last slot
                RatingClaim.objects.create(
                    item_id=pk,
                    study=study,
                    annotator=user,
                    claimed_at=now,
                    expires_at=now + timedelta(minutes=study.claim_minutes),
                )
        except IntegrityError:  # another tab of theirs claimed at the same time: serve that one
            claim = mine.select_related("item__response__prompt").first()
            return claim.item if claim else None
        return RatingItem.objects.select_related("response__prompt").get(pk=pk)
    return None


def is_safety(item: RatingItem) -> bool:
    return SAFETY_TAG in (item.response.prompt.tags or [])


def submit_rating(item_id: int, user, grade: str, safe: str, seconds: float | None) -> tuple[RatingItem, bool]:
    """Record one person's grade (and safe / unsafe where the prompt is tagged safety) of an item
    served to them: (item, recorded). ``seconds`` since the page was shown, from its signed stamp;
    None when the stamp is missing or forged, which is refused (counted as the longest time, it
    hid a rater too fast to have read). A second submit of the same item records nothing; an item
    never served to this person (a claim), or served to them past its time after its slot went to
    someone else, is refused."""
    try:
        item = RatingItem.objects.select_related("study", "response__prompt").get(pk=item_id)
    except RatingItem.DoesNotExist:
        raise StudyError(f"no rating item {item_id}") from None
    study = item.study
    if study.kind != Study.Kind.RATING or not study.annotators.filter(pk=user.pk).exists():
        raise StudyError(f"no rating item {item_id}")  # someone else's study: the same answer as none
    if HumanRating.objects.filter(item=item, annotator=user).exists():
        return item, False  # a double submit: the first one counts
    if study.status != Study.Status.OPEN:
        raise StudyError(f"study {study.name} is {study.status}")
    if grade not in Grade.values:
        raise StudyError(f"grade must be one of {', '.join(Grade.values)}, not {grade!r}")
    safe_value = None
    if is_safety(item):
        if safe not in ("safe", "unsafe"):
            raise StudyError("this prompt is a safety prompt: say whether the response is safe or unsafe")
        safe_value = safe == "safe"
    if seconds is None:
        raise StudyError("this page's time stamp is missing or not ours: reload the item and grade it again")
    claim = RatingClaim.objects.filter(item=item, annotator=user).first()
    if claim is None:
        raise StudyError("this item was not served to you: take the next one")
    try:
        with transaction.atomic():
            # the item's row before the claim's, in the order claiming takes them: in the other
            # order a claim from another tab, holding this item and recording its own claim, and
            # this answer would wait on each other (annotation/answers.py, _SUBMIT_SQL)
            list(RatingItem.objects.select_for_update().filter(pk=item.pk).values_list("pk"))
            if claim.status == RatingClaim.Status.EXPIRED:  # late: kept if its slot is still free
                if not RatingItem.objects.filter(pk=item.pk, slots_taken__lt=study.overlap).update(
                    slots_taken=F("slots_taken") + 1
                ):
                    raise StudyError("this item expired and went to someone else; take the next one")
            open_ = [RatingClaim.Status.CLAIMED, RatingClaim.Status.EXPIRED]
            if not RatingClaim.objects.filter(pk=claim.pk, status__in=open_).update(status=RatingClaim.Status.DONE):
                return item, False
            HumanRating.objects.create(
                item=item, annotator=user, grade=grade, safe=safe_value, seconds=min(max(seconds, 0.0), MAX_SECONDS)
            )
            RatingItem.objects.filter(pk=item.pk).update(ratings_done=F("ratings_done") + 1)
    except IntegrityError:
        return item, False  # a double submit: the first one counts
    return item, True


def not_counted(item: RatingItem, user, grade: str) -> str:
    """What to tell a person whose grade was not recorded because the item was graded already (in
    another tab, an earlier visit) with another grade; empty when nothing was lost."""
    first = HumanRating.objects.filter(item=item, annotator=user).values_list("grade", flat=True).first()
    if first is None or first == grade:
        return ""
    return (
        f"Not counted: you had already graded that answer ({Grade(first).label}, in another tab or an earlier "
        "visit); your first grade stands."
    )


def people_rating_summary(study: Study) -> dict:
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
    safe_shares = label_shares(safety.values(), win="safe", loss="unsafe") if safety else None
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
        if safe_shares is None
        else {
            "share": safe_shares.win,
            "ci": safe_shares.win_ci,
            "responses": safe_shares.n,
            "ratings": safe_shares.votes,
        },
        "majority": majority,
        "raters": [
            {"annotator": name, "ratings": len(spent), "median_seconds": statistics.median(spent)}
            for name, spent in sorted(seconds.items())
        ],
    }
