"""Taking an item: the annotator's open claim, or a new one on the first comparison of the study's
random order with a free slot that they have not seen. Taking a slot is one conditional UPDATE, so
two annotators never take one beyond the study's overlap.

Two implementations of the same claim: the portable one (the ORM: read a few candidates, take a
slot with a conditional UPDATE, record the claim, load the page; five round trips), and on
PostgreSQL one statement that does all of it (CLAIM_IN_ONE_STATEMENT). SQLite cannot run that
statement (no INSERT or UPDATE inside WITH, no FOR UPDATE SKIP LOCKED), so one implementation for
both databases would be the portable one; the one statement is kept because it halves the web
server's CPU per annotator cycle on PostgreSQL (bench/annotation_profile.py, the two alternated in
one run: 8.4 ms vs 20.3 ms, 0.41, on 2026-12-07; 7.3 vs 13.8 ms, 0.53, the run before;
bench/results/annotation-profile.json), and tests run both paths on PostgreSQL."""

from __future__ import annotations

import random
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import User
from django.core.cache import caches
from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone

from evalsite.annotation import precision
from evalsite.annotation.models import Assignment, Comparison, HumanJudgment, Study
from evalsite.annotation.studies import StudyError
from evalsite.catalog.models import Prompt, Response


def release_expired(study: Study) -> int:
    """Unfinished claims past their time return their slot to the pool."""
    now = timezone.now()
    released = 0
    expired = Assignment.objects.filter(comparison__study=study, status=Assignment.Status.CLAIMED, expires_at__lt=now)
    for pk, comparison_id in expired.values_list("pk", "comparison_id"):
        if Assignment.objects.filter(pk=pk, status=Assignment.Status.CLAIMED).update(status=Assignment.Status.EXPIRED):
            Comparison.objects.filter(pk=comparison_id, slots_taken__gt=0).update(slots_taken=F("slots_taken") - 1)
            released += 1
    return released


def claim_next(
    study: Study, user: User, rng: random.Random | None = None, member_checked: bool = False, gold_only: bool = False
) -> Assignment | None:
    """The annotator's open claim, or a new one on a comparison they have not seen, or None
    when nothing is left for them. ``gold_only``: a gold check or nothing (a crowd screening)."""
    rng = rng or random.Random()
    if study.status != Study.Status.OPEN:
        raise StudyError(f"study {study.name} is not open")
    if not member_checked and not study.annotators.filter(pk=user.pk).exists():
        raise StudyError("you are not an annotator of this study")
    # expired claims are swept at most every CLAIM_SWEEP_SECONDS per process (a scan on every
    # claim would cost each annotator a query for claims that expire after half an hour), and
    # always before an annotator is told that nothing is left
    if caches["process"].add(f"claim-sweep:{study.pk}", True, settings.CLAIM_SWEEP_SECONDS):
        release_expired(study)
    if current := open_claim(study, user):
        return current
    # the study knows enough: no new comparison is started, but the ones that have some of their
    # votes are finished (a comparison counts only with all of them: those votes are paid for)
    finishing = study.enough_at is not None
    taken = _claim_new(study, user, rng, gold_only, finishing)
    if taken is None and release_expired(study):
        taken = _claim_new(study, user, rng, gold_only, finishing)
    for _ in range(3):  # a comparison another claim held locked at that moment was skipped
        if taken is not None or gold_only or not _slots_left_for(study, user, finishing):
            break
        if current := open_claim(study, user):  # another tab of theirs claimed meanwhile
            return current
        taken = _claim_new(study, user, rng, gold_only, finishing)
    return taken or open_claim(study, user)


def _open_comparisons(study: Study, finishing: bool = False):
    """The study's comparisons that still want a vote: a free slot, drawn for people in a sampled
    study; ``finishing``: only those some votes have started."""
    open_ = Comparison.objects.filter(study=study, is_gold=False, slots_taken__lt=study.overlap)
    if study.sampling_rate is not None:
        open_ = open_.filter(people_wanted=True)
    if finishing:
        open_ = open_.filter(judgments_done__gt=0, completed_at__isnull=True)
    return open_


def _slots_left_for(study: Study, user: User, finishing: bool = False) -> bool:
    """Whether a comparison this annotator has not seen still has a free slot: asked only before
    telling them nothing is left (SKIP LOCKED, and the portable path's lost races, pass over a
    comparison that another annotator's claim is taking at that moment)."""
    return _open_comparisons(study, finishing).exclude(assignments__annotator=user).exists()


LEFT_CAP = 1000  # past this many, "1000+ left" is all a progress bar needs to say


def left_for(study: Study, user: User) -> int:
    """What this annotator has left in the study: the comparisons they could still be given (a
    free slot, not seen by them; a stopped study's started ones only), and the one they hold now.
    The one definition the item page, the home page and the last page all show, as done of done +
    left; counted up to LEFT_CAP."""
    finishing = study.enough_at is not None
    unseen = _open_comparisons(study, finishing).exclude(assignments__annotator=user)
    held = Assignment.objects.filter(study=study, annotator=user, status=Assignment.Status.CLAIMED).exists()
    return unseen[:LEFT_CAP].count() + held


@dataclass(frozen=True)
class _Pool:
    """Where to look for an item: gold checks (in random order, a small pool) or open items in the
    study's random order from ``floor`` on."""

    gold: bool
    floor: int = 0  # the first draw_order worth looking at
    baseline: int | None = None  # adaptive assignment: this baseline's comparisons only
    first: int | None = None  # a ranking study's active pair: comparisons of (first, baseline) only
    finishing: bool = False  # the study has enough: comparisons with some of their votes only


def _claim_new(
    study: Study, user: User, rng: random.Random, gold_only: bool = False, finishing: bool = False
) -> Assignment | None:
    # Every claim walks the study's one random order (draw_order) and takes the first comparison
    # with a free slot, so that what has been voted is always a uniformly random part of each
    # baseline's comparisons (a sampled study: of those drawn for people), whatever order the
    # prompts came in. The walk starts at the order's low-water mark (the first free position,
    # re-read every CLAIM_SWEEP_SECONDS) rather than scanning the comparisons already full.
    floor = _order_floor(study)
    pools = [_Pool(False, floor=floor, finishing=finishing)]
    if floor:
        pools.append(_Pool(False, finishing=finishing))  # a slot freed behind the mark
    if study.kind == Study.Kind.RANKING:
        if study.assignment == Study.AssignmentPolicy.ADAPTIVE and rng.random() >= RANKING_UNIFORM_SHARE:
            # a pair that can still change the answer to the study's question first (in the same
            # order, so each pair's votes stay a random part of its prompts); the others after it
            pair = active_pair(study, rng)
            if pair is not None:
                pools[:0] = [_Pool(False, floor=floor, first=pair[0], baseline=pair[1], finishing=finishing)]
    elif study.assignment == Study.AssignmentPolicy.ADAPTIVE:
        # the baseline known least well first (in the same order, so each baseline's votes stay a
        # random part of it); the others when it has nothing for this user
        widest = widest_baseline(study)
        if widest is not None:
            pools[:0] = [_Pool(False, floor=floor, baseline=widest, finishing=finishing)]
    if gold_only:
        pools = [_Pool(True)]
    elif finishing:
        pass  # no gold once the study has enough: only the started comparisons are finished
    elif study.gold_rate and rng.random() < study.gold_rate:
        pools.insert(0, _Pool(True))  # mixed in at the study's rate, looking like any other item
    else:
        pools.append(_Pool(True))  # only when nothing else is left
    one_statement = connection.vendor == "postgresql" and settings.CLAIM_IN_ONE_STATEMENT
    take = _take_from_pool_sql if one_statement else _take_from_pool
    now = timezone.now()
    for pool in pools:
        if assignment := take(study, user, pool, rng, now):
            if not one_statement:  # the one statement brought the page with it
                assignment.comparison = comparison_page(assignment.comparison_id)
            return assignment
    return None


def _order_floor(study: Study) -> int:
    """The first position of the study's order with a free slot (0: none known), re-read at most
    every CLAIM_SWEEP_SECONDS per process: a claim may pass over a slot freed behind it meanwhile,
    which the next claims' second pool, and the next re-read, pick up."""

    def compute() -> int:
        return _open_comparisons(study).order_by("draw_order").values_list("draw_order", flat=True).first() or 0

    floor = caches["process"].get_or_set(f"study-order-floor:{study.pk}", compute, settings.CLAIM_SWEEP_SECONDS)
    return int(floor or 0)


def _take_from_pool(study: Study, user: User, pool: _Pool, rng: random.Random, now) -> Assignment | None:
    """Any database: read a few candidates, then take a slot with one conditional UPDATE."""
    if pool.gold:
        candidates = Comparison.objects.filter(study=study, is_gold=True)
    else:
        candidates = _open_comparisons(study, pool.finishing).filter(draw_order__gte=pool.floor)
    candidates = candidates.exclude(assignments__annotator=user)
    if pool.baseline is not None:
        candidates = candidates.filter(baseline_id=pool.baseline)
    if pool.first is not None:
        candidates = candidates.filter(first_system_id=pool.first)
    # the texts only for the one taken
    candidates = candidates.order_by("?" if pool.gold else "draw_order").only("pk", "is_gold")
    for comparison in candidates[:25]:
        if assignment := _take_slot(study, comparison, user, rng, now):
            return assignment
    return None


_CLAIM_SQL = """
WITH pick AS (
    SELECT c.id FROM {comparison} c
    WHERE c.study_id = %(study)s AND c.is_gold = %(gold)s AND (c.is_gold OR c.slots_taken < %(overlap)s)
      {walk}{baseline}{wanted}{finishing}
      AND NOT EXISTS (SELECT 1 FROM {assignment} a WHERE a.comparison_id = c.id AND a.annotator_id = %(user)s)
    ORDER BY {order} LIMIT 1
    FOR UPDATE SKIP LOCKED
), took AS (
    UPDATE {comparison} c SET slots_taken = c.slots_taken + 1 FROM pick WHERE c.id = pick.id RETURNING c.id
), made AS (
    INSERT INTO {assignment}
        (comparison_id, study_id, annotator_id, candidate_on_left, status, flag, claimed_at, expires_at, shown_at)
    SELECT took.id, %(study)s, %(user)s, %(left)s, %(status)s, '', %(now)s, %(expires)s, %(now)s FROM took
    RETURNING id, comparison_id
)
-- and what the item's page shows: the prompt, both answers, the annotator's judgments so far and
-- what they have left (left_for; the snapshot is the statement's start, so the item just
-- claimed is still counted as unseen: it is the one they hold)
SELECT made.id, made.comparison_id, c.is_gold, p.id, p.messages, cr.id, cr.text, cr.html, br.id, br.text, br.html,
       (SELECT COUNT(*) FROM {judgment} j JOIN {comparison} jc ON jc.id = j.comparison_id
        WHERE j.annotator_id = %(user)s AND jc.study_id = %(study)s),
       (SELECT COUNT(*) FROM (
            SELECT 1 FROM {comparison} l
            WHERE l.study_id = %(study)s AND NOT l.is_gold AND l.slots_taken < %(overlap)s
              {left_wanted}{left_finishing}
              AND NOT EXISTS (SELECT 1 FROM {assignment} la
                              WHERE la.comparison_id = l.id AND la.annotator_id = %(user)s)
            LIMIT %(left_cap)s) AS open_)
FROM made
JOIN {comparison} c ON c.id = made.comparison_id
JOIN {prompt} p ON p.id = c.prompt_id
JOIN {response} cr ON cr.id = c.candidate_response_id
JOIN {response} br ON br.id = c.baseline_response_id
"""


def _take_from_pool_sql(study: Study, user: User, pool: _Pool, rng: random.Random, now) -> Assignment | None:
    """PostgreSQL: pick, take the slot and record the claim in one statement (one round trip
    instead of five). The picked row is locked (rows another claim holds are skipped) and its slot
    count re-checked on its latest version, so the overlap holds as with `_take_slot`'s UPDATE; the
    unique (comparison, annotator) constraint still refuses a second claim from another tab."""
    fields = {
        "study": study.pk,
        "gold": pool.gold,
        "overlap": study.overlap,
        "floor": pool.floor,
        "user": user.pk,
        "left": bool(rng.getrandbits(1)),
        "status": Assignment.Status.CLAIMED,
        "now": now,
        "expires": now + timedelta(minutes=study.claim_minutes),
        "baseline": pool.baseline,
        "first": pool.first,
        "left_cap": LEFT_CAP,
    }
    walk = not pool.gold
    sql = _CLAIM_SQL.format(
        comparison=Comparison._meta.db_table,
        assignment=Assignment._meta.db_table,
        judgment=HumanJudgment._meta.db_table,
        prompt=Prompt._meta.db_table,
        response=Response._meta.db_table,
        order="c.draw_order" if walk else "random()",
        walk="AND c.draw_order >= %(floor)s" if walk and pool.floor else "",
        baseline=("" if pool.baseline is None else " AND c.baseline_id = %(baseline)s")
        + ("" if pool.first is None else " AND c.first_system_id = %(first)s"),
        wanted=" AND c.people_wanted" if walk and study.sampling_rate is not None else "",
        finishing=" AND c.judgments_done > 0 AND c.completed_at IS NULL" if pool.finishing else "",
        left_wanted=" AND l.people_wanted" if study.sampling_rate is not None else "",
        left_finishing=(" AND l.judgments_done > 0 AND l.completed_at IS NULL" if study.enough_at is not None else ""),
    )
    try:
        # a statement is atomic on its own; inside a caller's transaction, a savepoint
        with transaction.atomic() if connection.in_atomic_block else nullcontext(), connection.cursor() as cursor:
            cursor.execute(sql, fields)
            row = cursor.fetchone()
    except IntegrityError:  # another tab of the same annotator took a claim at the same time
        return None  # (claim_next then serves the claim the other tab took)
    if row is None:
        return None
    assignment = Assignment(
        id=row[0],
        comparison_id=row[1],
        study_id=study.pk,
        annotator=user,
        candidate_on_left=fields["left"],
        status=fields["status"],
        claimed_at=now,
        expires_at=fields["expires"],
        shown_at=now,
    )
    assignment._state.adding, assignment._state.db = False, connection.alias  # a row that exists
    assignment.comparison = _page_from_row(study, row)
    assignment.done_before = row[11]  # type: ignore[attr-defined]
    assignment.left = row[12] + (1 if pool.gold else 0)  # type: ignore[attr-defined]  # a gold check held is not among the counted
    return assignment


def _page_from_row(study: Study, row: tuple) -> Comparison:
    """The comparison of a claim as `comparison_page` gives it, from the claim statement's row
    (any other field is loaded if asked for, as a deferred one)."""
    alias = connection.alias
    messages = Prompt._meta.get_field("messages").from_db_value(row[4], None, connection)  # type: ignore[arg-type]
    comparison = Comparison.from_db(alias, ["id", "study_id", "is_gold"], [row[1], study.pk, row[2]])
    comparison.prompt = Prompt.from_db(alias, ["id", "messages"], [row[3], messages])
    comparison.candidate_response = Response.from_db(alias, ["id", "text", "html"], list(row[5:8]))
    comparison.baseline_response = Response.from_db(alias, ["id", "text", "html"], list(row[8:11]))
    return comparison


def comparison_page(pk: int) -> Comparison:
    """A comparison with just what its page shows: the prompt's turns and the two answers (the
    responses' other columns, JSON among them, cost more to load than the texts)."""
    return (
        Comparison.objects.select_related("prompt", "candidate_response", "baseline_response")
        .only(
            "study",
            "is_gold",
            "prompt__messages",
            *(f"{side}_response__{field}" for side in ("candidate", "baseline") for field in ("text", "html")),
        )
        .get(pk=pk)
    )


def widest_baseline(study: Study) -> int | None:
    """The baseline whose win share the study knows least well (the widest exact interval over its
    complete comparisons; the fewest first while none is complete), recomputed at most every
    ADAPTIVE_REFRESH_SECONDS per process: a GROUP BY over the study's comparisons. Which baseline
    the next vote goes to depends on votes already in only, so the estimates stay valid."""

    def compute() -> int | None:
        rows = precision.baseline_precision(study, sequences=False)
        if not rows:
            return None
        return max(rows, key=lambda r: (r["half_width"], -r["n"]))["baseline_id"]

    return caches["process"].get_or_set(f"study-widest:{study.pk}", compute, settings.ADAPTIVE_REFRESH_SECONDS)


RANKING_UNIFORM_SHARE = 0.1  # of a ranking study's claims, drawn over every pair (bench/ranking.py's floor)


# what says a ranking study's active pairs: evalsite/dashboard/ranking.py's active_pairs, set by
# the dashboard app when it is ready (it reads this app and the judge's verdicts: it sits above)
ACTIVE_PAIRS: Callable[[Study], list[tuple[int, int]]] | None = None


def active_pair(study: Study, rng: random.Random) -> tuple[int, int] | None:
    """A ranking study's next pair (first system id, second): one drawn at random among the pairs
    that can still change the answer to its question, recomputed at most every
    ADAPTIVE_REFRESH_SECONDS per process from the votes already in; None once none can (or where
    nothing says which)."""
    chooser = ACTIVE_PAIRS
    if chooser is None:
        return None
    pairs = caches["process"].get_or_set(
        f"study-active-pairs:{study.pk}", lambda: chooser(study), settings.ADAPTIVE_REFRESH_SECONDS
    )
    if not pairs:
        return None
    first, second = pairs[rng.randrange(len(pairs))]
    return first, second


def open_claim(study: Study, user: User) -> Assignment | None:
    """The annotator's unfinished claim in the study (usually none), with what its page shows."""
    assignment = Assignment.objects.filter(
        annotator=user, comparison__study=study, status=Assignment.Status.CLAIMED
    ).first()
    if assignment is not None:
        assignment.comparison = comparison_page(assignment.comparison_id)
    return assignment


def _take_slot(study: Study, comparison: Comparison, user: User, rng: random.Random, now) -> Assignment | None:
    limit = {} if comparison.is_gold else {"slots_taken__lt": study.overlap}
    try:
        with transaction.atomic():
            if not Comparison.objects.filter(pk=comparison.pk, **limit).update(slots_taken=F("slots_taken") + 1):
                return None  # someone else took the last slot first
            return Assignment.objects.create(
                comparison=comparison,
                study=study,
                annotator=user,
                candidate_on_left=bool(rng.getrandbits(1)),
                claimed_at=now,
                expires_at=now + timedelta(minutes=study.claim_minutes),
                shown_at=now,
            )
    except IntegrityError:  # the same annotator claiming twice at once (two tabs): the slot is given back
        return None  # (claim_next then serves the claim the other tab took)
