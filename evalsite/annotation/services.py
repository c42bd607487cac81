"""Studies, claiming and judging. Claiming is one conditional UPDATE per comparison, so two
annotators never take a slot beyond the study's overlap; submitting is one short transaction,
and however often the form is posted an assignment gets one judgment."""

from __future__ import annotations

import random
import secrets
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.core.cache import caches
from django.core.mail import send_mail
from django.db import IntegrityError, connection, transaction
from django.db.models import Case, Count, Exists, F, OuterRef, Q, Subquery, Value, When
from django.db.models.functions import Coalesce
from django.urls import reverse
from django.utils import timezone

from evalsite.annotation import precision
from evalsite.annotation.decoys import decoy
from evalsite.annotation.models import (
    Assignment,
    Comparison,
    HumanJudgment,
    LoginToken,
    Outcome,
    Study,
    studies_holding,
)
from evalsite.catalog.models import Prompt, PromptSet, Response, System, render_responses
from evalsite.core.accounts import annotators_group, new_password
from stats.evidence import sampling_probabilities

VOTE_FIELD: dict[str, str] = {
    Outcome.CANDIDATE: "votes_candidate",
    Outcome.BASELINE: "votes_baseline",
    Outcome.TIE: "votes_tie",
}


def recount_votes(study: Study, user: User | None = None) -> int:
    """Recompute the comparisons' vote counters (after an annotator is excluded or included)."""
    comparisons = Comparison.objects.filter(study=study)
    if user is not None:
        comparisons = comparisons.filter(judgments__annotator=user)
    excluded = study.excluded.values("pk")
    updates = {}
    for outcome, field in VOTE_FIELD.items():
        counted = (
            HumanJudgment.objects.filter(comparison=OuterRef("pk"), outcome=outcome)
            .exclude(annotator__in=excluded)
            .values("comparison")
            .annotate(n=Count("id"))
            .values("n")
        )
        updates[field] = Coalesce(Subquery(counted), Value(0))
    return Comparison.objects.filter(pk__in=comparisons.values("pk")).update(**updates)


def set_excluded(study: Study, user: User, excluded: bool) -> None:
    """Leave an annotator out of the study's results (their judgments are kept), or back in."""
    with transaction.atomic():
        if excluded:
            study.excluded.add(user)
        else:
            study.excluded.remove(user)
        recount_votes(study, user)


class StudyError(Exception):
    """A user's request about a study cannot be done; the message says why and what to do."""


# --- creating and starting studies -------------------------------------------------------------


def create_study(
    name: str,
    candidate: System,
    baselines: list[System],
    prompt_set: PromptSet,
    *,
    overlap: int = 1,
    gold_rate: float = 0.05,
    instructions: str | None = None,
    assignment: str | None = None,
) -> Study:
    if Study.objects.filter(name=name).exists():
        raise StudyError(f"a study named {name!r} exists")
    if not baselines:
        raise StudyError("a study needs at least one baseline")
    if candidate in baselines:
        raise StudyError(f"{candidate.name} cannot be both the candidate and a baseline")
    if overlap < 1:
        raise StudyError("overlap must be at least 1")
    if not 0 <= gold_rate < 1:
        raise StudyError("gold rate must be in [0, 1)")
    assignment = assignment or settings.STUDY_DEFAULT_ASSIGNMENT
    if assignment not in Study.AssignmentPolicy.values:
        raise StudyError(f"assignment must be one of {', '.join(Study.AssignmentPolicy.values)}")
    with transaction.atomic():
        extra = {"instructions": instructions} if instructions else {}
        study = Study.objects.create(
            name=name,
            candidate=candidate,
            prompt_set=prompt_set,
            overlap=overlap,
            gold_rate=gold_rate,
            assignment=assignment,
            **extra,
        )
        study.baselines.set(baselines)
    return study


def missing_responses(study: Study) -> list[tuple[str, str]]:
    """(system, prompt id) pairs that lack a usable response (sample 0 without an error). An empty
    answer is usable: it is what the system said, and annotators judge it like any other."""
    systems = [study.candidate, *study.baselines.order_by("name")]
    prompts = list(study.prompt_set.prompts.order_by("id"))
    have = set(
        Response.objects.filter(system__in=systems, prompt__in=prompts, sample_index=0, error="").values_list(
            "system_id", "prompt_id"
        )
    )
    return [(s.name, p.external_id) for s in systems for p in prompts if (s.pk, p.pk) not in have]


GOLD_PREFIX = "gold-degraded-"  # the scrambled copies studies made before decoys (gold_sources names them)
DECOY_PREFIX = "gold-decoy-"


def _decoy_system(candidate: System) -> System:
    return System.objects.get_or_create(
        name=(DECOY_PREFIX + candidate.name)[:100],
        defaults={
            "backend": "imported",
            "description": f"Decoys for gold checks: {candidate.name}'s answers to other prompts "
            "(annotation/decoys.py).",
        },
    )[0]


def _gold_rows(study: Study, prompts: list[Prompt], responses: dict, rng: random.Random) -> list[Comparison]:
    """The study's default gold checks: on a random ``gold_rate`` share of its prompts, the
    candidate's answer beside a decoy (evalsite/annotation/decoys.py: the candidate's answer to
    another of the study's prompts that looks like it on the page), the candidate's the better."""
    n_gold = round(study.gold_rate * len(prompts)) if study.gold_rate else 0
    if not n_gold:
        return []
    system = _decoy_system(study.candidate)
    answers = {p.pk: responses[(study.candidate.pk, p.pk)] for p in prompts}
    rows = []
    for p in rng.sample(prompts, min(max(1, n_gold), len(prompts))):
        good = answers[p.pk]
        donors = [r.text for pk, r in answers.items() if pk != p.pk]
        text = decoy(good.text, p.text, donors, rng)
        bad, created = Response.objects.get_or_create(
            system=system, prompt=p, sample_index=0, defaults={"text": text, "finish_reason": "imported"}
        )
        if not created and bad.text != text and not studies_holding([bad.pk]):
            Response.objects.filter(pk=bad.pk).update(text=text, html=None)  # no open study shows it: made anew
            bad.text = text
        rows.append(
            Comparison(
                study=study,
                prompt=p,
                baseline=system,
                candidate_response=good,
                baseline_response=bad,
                is_gold=True,
                gold_better=Outcome.CANDIDATE,
            )
        )
    return rows


def start_study(study: Study, rng: random.Random | None = None) -> int:
    """Expand the study into comparisons and open it. Refuses while responses are missing."""
    rng = rng or random.Random()
    if study.status != Study.Status.DRAFT:
        raise StudyError(f"study {study.name} is already {study.status}")
    if study.kind == Study.Kind.RATING:  # its items were made with it (annotation.rating)
        Study.objects.filter(pk=study.pk).update(status=Study.Status.OPEN)
        study.status = Study.Status.OPEN
        return study.rating_items.count()
    missing = missing_responses(study)
    if missing:
        shown = ", ".join(f"{s}/{p}" for s, p in missing[:15]) + (" ..." if len(missing) > 15 else "")
        raise StudyError(f"{len(missing)} response(s) missing; generate or import them first: {shown}")
    prompts = list(study.prompt_set.prompts.order_by("id"))
    systems = [study.candidate, *study.baselines.all()]
    responses = {
        (r.system_id, r.prompt_id): r
        for r in Response.objects.filter(system__in=systems, prompt__in=prompts, sample_index=0)
    }
    with transaction.atomic():
        rows = [
            Comparison(
                study=study,
                prompt=p,
                baseline=b,
                candidate_response=responses[(study.candidate.pk, p.pk)],
                baseline_response=responses[(b.pk, p.pk)],
            )
            for b in study.baselines.order_by("name")
            for p in prompts
        ]
        draw_order(rows, rng)
        rows += _gold_rows(study, prompts, responses, rng)
        Comparison.objects.bulk_create(rows)
        study.status = Study.Status.OPEN
        study.save(update_fields=["status"])
    # every answer rendered now, so that no annotator waits for Markdown to be rendered
    comparisons = Comparison.objects.filter(study=study)
    render_responses(
        Response.objects.filter(
            Q(pk__in=comparisons.values("candidate_response")) | Q(pk__in=comparisons.values("baseline_response"))
        )
    )
    if connection.vendor == "postgresql":
        # fresh statistics: planned with the empty table's, the claim's pool query sorts the whole
        # study instead of walking the primary key from its random start (measured 3-5 ms vs 0.1 ms)
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {Comparison._meta.db_table}")
    return len(rows)


def draw_order(comparisons: list[Comparison], rng: random.Random) -> None:
    """Give the comparisons one uniformly random order, which every claim walks (see _claim_new):
    prompt files come grouped by source, and a study filled in file order would have voted one
    source first and stopped with it over-represented."""
    order = list(range(1, len(comparisons) + 1))
    rng.shuffle(order)
    for comparison, position in zip(comparisons, order, strict=True):
        comparison.draw_order = position


def plan_sampling(
    study: Study, uncertainty: dict[int, float | None], rate: float, rng: random.Random | None = None
) -> dict[str, tuple[int, int]]:
    """Make an open study ask people about a ``rate`` share of its comparisons, chosen where the
    judge is least sure (``uncertainty`` per comparison id: the judge's expected squared error,
    p (1 - p) of its soft verdict; None where it gave none, taken as the most uncertain), and walked
    in one random order; the dashboard weights the votes back (stats.evidence.sampled_terms).
    Only before the study's first vote: the chances must not depend on what people said. The
    comparisons keep the study's random order, which the walk follows.
    Returns, per baseline, (comparisons drawn for people, comparisons)."""
    rng = rng or random.Random()
    if study.status != Study.Status.OPEN:
        raise StudyError(f"study {study.name} is {study.status}: sample an open study before its first vote")
    if not 0 < rate <= 1:
        raise StudyError(f"--rate must be above 0 and at most 1, got {rate}")
    comparisons = list(Comparison.objects.filter(study=study, is_gold=False).select_related("baseline"))
    known = {c.pk for c in comparisons}
    unknown = [pk for pk in uncertainty if pk not in known]
    if unknown:
        raise StudyError(f"comparison(s) not in study {study.name}: {', '.join(map(str, unknown[:10]))}")
    summary: dict[str, tuple[int, int]] = {}
    by_baseline: dict[str, list[Comparison]] = {}
    for comparison in comparisons:
        by_baseline.setdefault(comparison.baseline.name, []).append(comparison)
    for name, group in sorted(by_baseline.items()):
        u = [uncertainty.get(c.pk) for c in group]
        chances = sampling_probabilities([0.25 if v is None else v for v in u], rate)
        for comparison, pi in zip(group, chances, strict=True):
            comparison.sampling_probability = float(pi)
            comparison.people_wanted = rng.random() < pi
        summary[name] = (sum(c.people_wanted for c in group), len(group))
    if any(c.draw_order is None for c in comparisons):  # a study older than its random order
        draw_order(comparisons, rng)
    with transaction.atomic():
        started = Q(slots_taken__gt=0) | Q(judgments_done__gt=0)
        if Comparison.objects.filter(started, study=study, is_gold=False).exists():
            raise StudyError(f"study {study.name} has claims or votes already: sampling is fixed before the first one")
        Comparison.objects.bulk_update(
            comparisons, ["sampling_probability", "people_wanted", "draw_order"], batch_size=1000
        )
        Study.objects.filter(pk=study.pk).update(sampling_rate=rate, assignment=Study.AssignmentPolicy.ADAPTIVE)
    study.sampling_rate, study.assignment = rate, Study.AssignmentPolicy.ADAPTIVE
    return summary


# --- the annotator's loop ----------------------------------------------------------------------


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
    if study.assignment == Study.AssignmentPolicy.ADAPTIVE:
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
-- what they have left (services.left_for; the snapshot is the statement's start, so the item just
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
        baseline="" if pool.baseline is None else " AND c.baseline_id = %(baseline)s",
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


@dataclass
class SubmitResult:
    judgment: HumanJudgment
    created: bool
    study_name: str


def submit(assignment_pk: int, user: User, choice: str, reason: str = "") -> SubmitResult:
    """Record the annotator's choice ("a", "b" or "tie"). A repeated post returns the judgment
    already recorded; an expired claim is taken back if its slot is still free."""
    if choice not in ("a", "b", "tie"):
        raise StudyError("choose A, B or neither")
    if connection.vendor == "postgresql" and settings.SUBMIT_IN_ONE_STATEMENT:
        if done := _submit_sql(assignment_pk, user, choice, reason):
            return done
        # not an open claim of this user's: a replay, an expired claim, someone else's; the
        # portable path below says which
    with transaction.atomic():
        _lock_comparison_of(assignment_pk)
        # only the assignment's row is locked: with the joined rows locked too, every submit in a
        # study would wait for the others on the study's row
        assignment = (
            Assignment.objects.select_for_update(of=("self",))
            .select_related("comparison__study")
            .only(
                *("comparison", "annotator", "candidate_on_left", "status", "claimed_at", "shown_at"),
                *("comparison__is_gold", "comparison__study", "comparison__study__name", "comparison__study__overlap"),
            )
            .get(pk=assignment_pk, annotator=user)
        )
        if assignment.status == Assignment.Status.DONE:
            return SubmitResult(assignment.judgment, created=False, study_name=assignment.comparison.study.name)
        comparison = assignment.comparison
        if assignment.status == Assignment.Status.EXPIRED:
            limit = {} if comparison.is_gold else {"slots_taken__lt": comparison.study.overlap}
            if not Comparison.objects.filter(pk=comparison.pk, **limit).update(slots_taken=F("slots_taken") + 1):
                raise StudyError("this item expired and went to another annotator; take the next one")
        elif assignment.status != Assignment.Status.CLAIMED:
            raise StudyError(f"this item was {assignment.status}")
        now = timezone.now()
        outcome, side = assignment.outcome_for(choice)
        seconds = (now - (assignment.shown_at or assignment.claimed_at)).total_seconds()
        judgment = HumanJudgment.objects.create(
            assignment=assignment,
            comparison=comparison,
            annotator=user,
            outcome=outcome,
            picked_side=side,
            reason=reason.strip()[:2000],
            seconds=seconds,
        )
        assignment.status, assignment.finished_at = Assignment.Status.DONE, now
        assignment.save(update_fields=["status", "finished_at"])
        # an excluded annotator's vote is kept, not counted (decided in the same statement)
        excluded = Study.excluded.through.objects.filter(study_id=comparison.study_id, user_id=user.pk)
        votes = VOTE_FIELD[outcome]
        Comparison.objects.filter(pk=comparison.pk).update(
            judgments_done=F("judgments_done") + 1,
            # its last vote: from now on it counts (precision.py)
            completed_at=Case(
                When(completed_at__isnull=True, judgments_done__gte=comparison.study.overlap - 1, then=Value(now)),
                default=F("completed_at"),
            ),
            **{votes: Case(When(Exists(excluded), then=F(votes)), default=F(votes) + 1)},
        )
    return SubmitResult(judgment, created=True, study_name=comparison.study.name)


# The comparison's row is locked before the claim's: claiming takes them in that order (a claim
# statement locks comparisons, some only passed over, then records the claim, which waits on
# whoever is changing this annotator's open claim), so answering in the other order could wait on
# a claim that waits on it (tests/test_annotation_studies.py, ..._never_deadlocks).
_SUBMIT_SQL = """
WITH held AS (
    SELECT c.id FROM {comparison} c
    WHERE c.id = (SELECT comparison_id FROM {assignment}
                  WHERE id = %(pk)s AND annotator_id = %(user)s AND status = %(claimed)s)
    FOR UPDATE
), a AS (
    UPDATE {assignment} SET status = %(done)s, finished_at = %(now)s
    WHERE id = %(pk)s AND annotator_id = %(user)s AND status = %(claimed)s AND EXISTS (SELECT 1 FROM held)
    RETURNING id, comparison_id, COALESCE(shown_at, claimed_at) AS since,
        CASE WHEN %(choice)s = 'tie' THEN %(tie)s
             WHEN (%(choice)s = 'a') = candidate_on_left THEN %(candidate)s ELSE %(baseline)s END AS outcome
), j AS (
    INSERT INTO {judgment}
        (assignment_id, comparison_id, annotator_id, outcome, picked_side, reason, seconds, created_at)
    SELECT a.id, a.comparison_id, %(user)s, a.outcome, %(side)s, %(reason)s,
           EXTRACT(EPOCH FROM (%(now)s - a.since))::float8, %(now)s
    FROM a
    RETURNING id, assignment_id, comparison_id, outcome, seconds
), c AS (
    UPDATE {comparison} c SET
        judgments_done = c.judgments_done + 1,
        completed_at = CASE WHEN c.completed_at IS NULL
                             AND c.judgments_done + 1 >= (SELECT overlap FROM {study} s WHERE s.id = c.study_id)
                            THEN %(now)s ELSE c.completed_at END,
        votes_candidate = c.votes_candidate + CASE WHEN j.outcome = %(candidate)s AND NOT {excluded} THEN 1 ELSE 0 END,
        votes_baseline = c.votes_baseline + CASE WHEN j.outcome = %(baseline)s AND NOT {excluded} THEN 1 ELSE 0 END,
        votes_tie = c.votes_tie + CASE WHEN j.outcome = %(tie)s AND NOT {excluded} THEN 1 ELSE 0 END
    FROM j
    WHERE c.id = j.comparison_id
    RETURNING c.study_id
)
SELECT j.id, j.assignment_id, j.comparison_id, j.outcome, j.seconds, s.name
FROM j, c JOIN {study} s ON s.id = c.study_id
"""


def _submit_sql(assignment_pk: int, user: User, choice: str, reason: str) -> SubmitResult | None:
    """PostgreSQL: an open claim's answer in one statement (one round trip instead of six): the
    assignment closed only if it is this user's open claim (a conditional UPDATE, which a second
    submit of the same answer waits for and then finds done), the judgment written, the
    comparison's votes counted unless the annotator is excluded. None when it was not an open
    claim: the portable path handles replays, expired claims and refusals."""
    now = timezone.now()
    fields: dict[str, Any] = {
        "pk": assignment_pk,
        "user": user.pk,
        "choice": choice,
        "side": {"a": "left", "b": "right", "tie": "none"}[choice],
        "reason": reason.strip()[:2000],
        "now": now,
        "done": Assignment.Status.DONE,
        "claimed": Assignment.Status.CLAIMED,
        "candidate": Outcome.CANDIDATE,
        "baseline": Outcome.BASELINE,
        "tie": Outcome.TIE,
    }
    # an excluded annotator's vote is kept, not counted
    through = Study.excluded.through._meta.db_table
    sql = _SUBMIT_SQL.format(
        excluded=f"EXISTS (SELECT 1 FROM {through} e WHERE e.study_id = c.study_id AND e.user_id = %(user)s)",
        assignment=Assignment._meta.db_table,
        judgment=HumanJudgment._meta.db_table,
        comparison=Comparison._meta.db_table,
        study=Study._meta.db_table,
    )
    with transaction.atomic() if connection.in_atomic_block else nullcontext(), connection.cursor() as cursor:
        cursor.execute(sql, fields)
        row = cursor.fetchone()
    if row is None:
        return None
    judgment_id, assignment_id, comparison_id, outcome, seconds, study_name = row
    judgment = HumanJudgment(
        id=judgment_id,
        assignment_id=assignment_id,
        comparison_id=comparison_id,
        annotator=user,
        outcome=outcome,
        picked_side=fields["side"],
        reason=fields["reason"],
        seconds=seconds,
        created_at=now,
    )
    judgment._state.adding, judgment._state.db = False, connection.alias  # a row that exists
    return SubmitResult(judgment, created=True, study_name=study_name)


def _lock_comparison_of(assignment_pk: int) -> None:
    """Inside a transaction that will change a claim and its comparison: the comparison's row
    first, in the order claiming takes them (see _SUBMIT_SQL)."""
    comparison = Assignment.objects.filter(pk=assignment_pk).values("comparison_id")
    list(Comparison.objects.select_for_update().filter(pk__in=Subquery(comparison)).values_list("pk"))


def give_up(assignment_pk: int, user: User, flag: str = "") -> Assignment:
    """Skip (or flag) an item: it is not shown to this annotator again and its slot is freed."""
    if flag and flag not in Assignment.Flag.values:
        raise StudyError(f"unknown flag {flag!r}")
    with transaction.atomic():
        _lock_comparison_of(assignment_pk)
        assignment = Assignment.objects.select_for_update().get(pk=assignment_pk, annotator=user)
        if assignment.status != Assignment.Status.CLAIMED:
            return assignment
        assignment.status = Assignment.Status.FLAGGED if flag else Assignment.Status.SKIPPED
        assignment.flag, assignment.finished_at = flag, timezone.now()
        assignment.save(update_fields=["status", "flag", "finished_at"])
        Comparison.objects.filter(pk=assignment.comparison_id, slots_taken__gt=0).update(
            slots_taken=F("slots_taken") - 1
        )
    return assignment


def mark_shown(assignment: Assignment) -> None:
    if assignment.shown_at is None:
        Assignment.objects.filter(pk=assignment.pk, shown_at__isnull=True).update(shown_at=timezone.now())


# --- onboarding --------------------------------------------------------------------------------

LOGIN_TOKEN_DAYS = 7


def login_token_for(user: User) -> str:
    token = secrets.token_urlsafe(24)
    LoginToken.objects.create(
        user=user, token_hash=LoginToken.hash(token), expires_at=timezone.now() + timedelta(days=LOGIN_TOKEN_DAYS)
    )
    return token


def login_token_user(token: str) -> User | None:
    """The user a token would log in, if it is unused and unexpired; reads only (a mail filter's
    GET or HEAD of the link must not spend it)."""
    unused = LoginToken.objects.filter(used_at__isnull=True, expires_at__gt=timezone.now())
    row = unused.filter(token_hash=LoginToken.hash(token)).select_related("user").first()
    return row.user if row else None


def use_login_token(token: str) -> User | None:
    """The token's user, once: a second use, or a late one, gives None."""
    now = timezone.now()
    updated = LoginToken.objects.filter(
        token_hash=LoginToken.hash(token), used_at__isnull=True, expires_at__gt=now
    ).update(used_at=now)
    if not updated:
        return None
    return LoginToken.objects.select_related("user").get(token_hash=LoginToken.hash(token)).user


def add_annotator(study: Study, username: str, email: str = "") -> tuple[User, str | None, str]:
    """Create (or reuse) an annotator account, add it to the study; returns (user, password if
    just created, one-time login token)."""
    with transaction.atomic():
        user = User.objects.filter(username=username).first()
        password = None
        if user is None:
            password = new_password()
            user = User.objects.create_user(username=username, email=email, password=password)
        user.groups.add(annotators_group())
        study.annotators.add(user)
        token = login_token_for(user)
    return user, password, token


def invite_annotator(study: Study, email: str) -> User:
    """An account named after the address (rater@example.org: rater-example.org) joins the
    study, and the address gets a one-time login link."""
    local, _, domain = email.partition("@")
    user, _, token = add_annotator(study, f"{local[:100]}-{domain[:40]}", email)
    link = settings.SITE_URL.rstrip("/") + reverse("annotation:token_login", args=[token])
    send_mail(
        f"You are invited to annotate: {study.name}",
        f"Hello,\n\nyou have been invited to compare answers in the study {study.name}.\n"
        f"This link logs you in once (valid {LOGIN_TOKEN_DAYS} days): {link}\n",
        settings.DEFAULT_FROM_EMAIL,
        [email],
    )
    return user


def next_annotator_names(prefix: str, count: int) -> list[str]:
    taken = set(User.objects.filter(username__startswith=prefix).values_list("username", flat=True))
    names: list[str] = []
    i = 1
    while len(names) < count:
        name = f"{prefix}{i:03d}"
        if name not in taken:
            names.append(name)
        i += 1
    return names
