"""What the annotator's pages are made of, for the annotation app's views and the crowd's (which
serve the same item page to participants): progress, the blinded item page, and the parts apps
above add to the staff's study page."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest
from django.shortcuts import render
from django.utils.safestring import mark_safe

from evalsite.annotation import claims
from evalsite.annotation.answers import CHOICE_WORDS, mark_shown
from evalsite.annotation.kinds import study_kind
from evalsite.annotation.models import Assignment, Study


def progress_for(study: Study, user, done: int | None = None, left: int | None = None) -> dict:
    """The annotator's progress in the study: done, of done plus what they have left (the one
    definition, claims.left_for; a rating study: the items they may still grade). ``done`` and
    ``left`` when the claim that brought the page counted them already (PostgreSQL's one claim
    statement)."""
    if done is None or left is None:
        counted = study_kind(study).progress(study, user)
        done, left = counted[0] if done is None else done, counted[1] if left is None else left
    total = done + left
    return {
        "done": done,
        "left": left,
        "target": total,
        "more": left >= claims.LEFT_CAP,
        "percent": min(100, round(100 * done / total)) if total else 100,
    }


def counted_by_claim(assignment: Assignment) -> tuple[int | None, int | None]:
    """What PostgreSQL's one claim statement counted with the claim: done and left (or None)."""
    return getattr(assignment, "done_before", None), getattr(assignment, "left", None)


def render_item(request, assignment: Assignment, progress: dict | None = None):
    study = assignment.comparison.study
    mark_shown(assignment)
    comparison = assignment.comparison
    left, right = comparison.candidate_response, comparison.baseline_response
    if not assignment.candidate_on_left:
        left, right = right, left
    context = {
        "assignment": assignment,
        "study": study,
        "messages_": comparison.prompt.messages,
        # only the texts, as sanitised HTML: no system name, no response id reaches the page
        "answer_a": mark_safe(left.rendered_html()),  # noqa: S308
        "answer_b": mark_safe(right.rendered_html()),  # noqa: S308
        "choices": CHOICE_WORDS,
        "both_bad": study.offers_both_bad,
        "flags": Assignment.Flag.choices,
        **(progress or progress_for(study, request.user, *counted_by_claim(assignment))),
    }
    return render(request, "annotation/item.html", context)


# Apps above this one add parts to the study page (the crowd app: its link card): each a function
# (request, study) -> template context, registered in its AppConfig.ready().
STUDY_PAGE_PARTS: list[Callable[[HttpRequest, Study], dict]] = []
