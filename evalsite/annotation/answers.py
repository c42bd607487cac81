"""Answering and skipping a claimed item. Submitting is one short transaction, and however often
the form is posted an assignment gets one judgment. As with claims (claims.py says why two are
kept), a portable implementation and, on PostgreSQL, one statement (SUBMIT_IN_ONE_STATEMENT)."""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import connection, transaction
from django.db.models import Case, Exists, F, Subquery, Value, When
from django.utils import timezone

from evalsite.annotation.models import Assignment, Comparison, HumanJudgment, Outcome, Study
from evalsite.annotation.studies import VOTE_FIELD, StudyError
from evalsite.core.paper import LIMA_CHOICES

SIDE_OF = {"a": "left", "b": "right", "tie": "none"}  # the choice an annotator clicked: the side it picked
# the paper's three, and the fourth a study may offer (Study.offers_both_bad): a tie marked so
CHOICE_WORDS = {**LIMA_CHOICES, "both_bad": "Both are bad"}


@dataclass
class SubmitResult:
    judgment: HumanJudgment
    created: bool
    study_name: str

    def not_counted(self, choice: str) -> str:
        """What to tell a person whose answer was not the one recorded: the comparison was already
        answered (another tab, a page kept open) with another choice. Empty when nothing was lost
        (the answer recorded now, or the same answer sent twice)."""
        first = (
            "both_bad"
            if self.judgment.both_bad
            else next(c for c, side in SIDE_OF.items() if side == self.judgment.picked_side)
        )
        if self.created or first == choice:
            return ""
        return (
            f"Not counted: you had already answered that comparison ({CHOICE_WORDS[first]}, in another tab or "
            "an earlier visit); your first answer stands."
        )


def submit(assignment_pk: int, user: User, choice: str, reason: str = "") -> SubmitResult:
    """Record the annotator's choice ("a", "b" or "tie"; "both_bad", where the study offers it, is a
    tie marked so).
    A repeated post returns the judgment already recorded; an expired claim is taken back if its
    slot is still free."""
    if choice not in CHOICE_WORDS:
        raise StudyError("choose A, B or neither")
    both_bad = choice == "both_bad"
    choice = "tie" if both_bad else choice
    if connection.vendor == "postgresql" and settings.SUBMIT_IN_ONE_STATEMENT and not both_bad:
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
                "comparison__study__status",
                "comparison__study__kind",
                "comparison__study__both_bad_choice",
            )
            .get(pk=assignment_pk, annotator=user)
        )
        if assignment.status == Assignment.Status.DONE:
            return SubmitResult(assignment.judgment, created=False, study_name=assignment.comparison.study.name)
        comparison = assignment.comparison
        if both_bad and not comparison.study.offers_both_bad:
            raise StudyError("choose A, B or neither (this study has no 'both are bad')")
        if comparison.study.status != Study.Status.OPEN:
            study = comparison.study
            raise StudyError(f"not counted: study {study.name} is {study.status} and takes no more answers")
        if assignment.status == Assignment.Status.EXPIRED:
            limit = {} if comparison.is_gold else {"slots_taken__lt": comparison.study.overlap}
            if not Comparison.objects.filter(pk=comparison.pk, **limit).update(slots_taken=F("slots_taken") + 1):
                raise StudyError(
                    "not counted: this comparison waited too long and went to another annotator; here is the next one"
                )
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
            both_bad=both_bad,
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
      AND EXISTS (SELECT 1 FROM {study} s WHERE s.id = c.study_id AND s.status = %(open)s)
    FOR UPDATE OF c
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
        "side": SIDE_OF[choice],
        "reason": reason.strip()[:2000],
        "now": now,
        "done": Assignment.Status.DONE,
        "claimed": Assignment.Status.CLAIMED,
        "open": Study.Status.OPEN,
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
