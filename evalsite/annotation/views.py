from __future__ import annotations

import time
from typing import Any

from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.core import signing
from django.db.models import Count, Q
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_POST

from evalsite.annotation import answers, claims, members
from evalsite.annotation import rating as ratings
from evalsite.annotation.blinding import blinding_warnings
from evalsite.annotation.forms import (
    ExcludeForm,
    InviteForm,
    JudgeForm,
    PlanForm,
    SkipForm,
    StudyForm,
    first_error,
)
from evalsite.annotation.gold import describe_sources, gold_sources
from evalsite.annotation.kinds import study_kind
from evalsite.annotation.models import Assignment, Comparison, RatingItem, Study
from evalsite.annotation.pages import STUDY_PAGE_PARTS, progress_for, render_item
from evalsite.annotation.quality import annotator_quality, study_agreement
from evalsite.annotation.studies import (
    StudyError,
    comparable_systems,
    create_study,
    missing_responses,
    set_excluded,
    start_study,
)
from evalsite.catalog.models import PromptSet
from evalsite.core.decorators import staff_required
from evalsite.core.paper import GRADE_BUTTONS

# --- annotators ---------------------------------------------------------------------------------


@login_required
def home(request):
    studies = request.user.studies.filter(status=Study.Status.OPEN)
    rows = [{"study": s, **progress_for(s, request.user)} for s in studies]
    return render(request, "annotation/home.html", {"rows": rows})


@login_required
def next_item(request, name: str):
    if crowd_token := request.session.get("crowd_token"):  # a crowd participant: quota and screening
        return redirect("crowd:next", token=crowd_token)
    study = get_object_or_404(Study, name=name, annotators=request.user)
    if (page := study_kind(study).page) != "annotation:next":  # a rating study: its own page
        return redirect(page, name=study.name)
    try:
        assignment = claims.claim_next(study, request.user, member_checked=True)
    except StudyError as exc:
        messages.error(request, str(exc))
        return redirect("annotation:home")
    if assignment is None:
        return render(request, "annotation/done.html", {"study": study, **progress_for(study, request.user)})
    # rendered here rather than redirected: one request per item instead of two
    assignment.comparison.study = study
    return render_item(request, assignment)


def own_assignment(request, pk: int) -> Assignment:
    """Only the annotator's own assignment; anyone else's is a 404, not a 403 (no probing)."""
    try:
        return Assignment.objects.select_related(
            "comparison__study", "comparison__prompt", "comparison__candidate_response", "comparison__baseline_response"
        ).get(pk=pk, annotator=request.user)
    except Assignment.DoesNotExist:
        raise Http404("no such item") from None


@login_required
def item(request, pk: int):
    assignment = own_assignment(request, pk)
    if assignment.status != Assignment.Status.CLAIMED:
        return redirect("annotation:next", name=assignment.comparison.study.name)
    return render_item(request, assignment)


SHOWN = "rating-shown"


@login_required
def rate(request, name: str):
    """A rating study's next response: the paper's three grades, keys 1 / 2 / 3."""
    study = get_object_or_404(Study, name=name, annotators=request.user, kind=Study.Kind.RATING)
    if study.status != Study.Status.OPEN:
        messages.error(request, f"study {study.name} is {study.status}")
        return redirect("annotation:home")
    item = ratings.claim_rating_item(study, request.user)
    if item is None:
        return render(request, "annotation/done.html", {"study": study, **progress_for(study, request.user)})
    context = {
        "study": study,
        "item": item,
        "messages_": item.response.prompt.messages,
        "answer": mark_safe(item.response.rendered_html()),  # noqa: S308 - sanitised HTML
        "grades": GRADE_BUTTONS,
        "safety": ratings.is_safety(item),
        # when the page was shown, signed: the seconds a rating took are measured by the server
        "shown": signing.dumps({"item": item.pk, "at": time.time()}, salt=SHOWN),
        **progress_for(study, request.user),
    }
    return render(request, "annotation/rate.html", context)


@login_required
@require_POST
def rate_submit(request, pk: int):
    try:  # the page's signed stamp: when it was shown, for this item (missing or forged: refused)
        shown = signing.loads(request.POST.get("shown", ""), salt=SHOWN, max_age=24 * 3600)
        seconds = time.time() - shown["at"] if shown.get("item") == pk else None
    except signing.BadSignature:
        seconds = None
    try:
        grade = request.POST.get("grade", "")
        item, recorded = ratings.submit_rating(pk, request.user, grade, request.POST.get("safe", ""), seconds)
        if not recorded and (lost := ratings.not_counted(item, request.user, grade)):
            messages.warning(request, lost)
    except StudyError as exc:
        study = RatingItem.objects.filter(pk=pk, study__annotators=request.user).values_list("study__name", flat=True)
        if not study:
            raise Http404("no such item") from None
        messages.error(request, str(exc))
        return redirect("annotation:rate", name=study[0])
    return redirect("annotation:rate", name=item.study.name)


@login_required
@require_POST
def judge(request, pk: int):
    form = JudgeForm(request.POST)
    try:
        if not form.is_valid():
            raise StudyError(first_error(form, named=False))
        result = answers.submit(pk, request.user, form.cleaned_data["choice"], form.cleaned_data["reason"])
        if lost := result.not_counted(form.cleaned_data["choice"]):
            messages.warning(request, lost)
    except Assignment.DoesNotExist:
        raise Http404("no such item") from None  # someone else's, or none: the same answer
    except StudyError as exc:
        messages.error(request, str(exc))
        return redirect("annotation:next", name=own_assignment(request, pk).comparison.study.name)
    return redirect("annotation:next", name=result.study_name)


@login_required
@require_POST
def skip(request, pk: int):
    assignment = own_assignment(request, pk)
    form = SkipForm(request.POST)
    try:
        if not form.is_valid():
            raise StudyError(first_error(form, named=False))
        answers.give_up(assignment.pk, request.user, form.cleaned_data["flag"])
    except StudyError as exc:
        messages.error(request, str(exc))
    return redirect("annotation:next", name=assignment.comparison.study.name)


def token_login(request, token: str):
    """A one-time login link. Opening it (GET or HEAD, as the link scanners of mail filters do)
    shows a button and spends nothing; the button (POST) logs in and spends it."""
    if request.method != "POST":
        user = members.login_token_user(token)
        if user is None:
            return render(request, "annotation/token_used.html", status=410)
        return render(request, "annotation/token_login.html", {"who": user.get_username()})
    user = members.use_login_token(token)
    if user is None:
        return render(request, "annotation/token_used.html", status=410)
    login(request, user, backend="evalsite.core.login.RateLimitedModelBackend")
    return redirect("home" if user.is_staff else "annotation:home")  # staff: the studies' dashboard


# --- staff ----------------------------------------------------------------------------------------


@staff_required
def studies(request):
    if request.method == "POST":
        form = StudyForm(request.POST)
        try:
            if not form.is_valid():
                raise StudyError(first_error(form))
            data = form.cleaned_data
            if data["kind"] == Study.Kind.RATING:
                study = ratings.create_rating_study(
                    data["name"], data["candidate"], data["prompt_set"], overlap=data["overlap"]
                )
                return redirect("annotation:study", name=study.name)
            study = create_study(
                data["name"],
                data["candidate"],
                list(data["baselines"]),
                data["prompt_set"],
                overlap=data["overlap"],
                gold_rate=data["gold_rate"] or 0.0,
                assignment=data["assignment"] or None,
            )
        except StudyError as exc:
            messages.error(request, str(exc))
            return redirect("annotation:studies")
        return redirect("annotation:study", name=study.name)
    rows = Study.objects.annotate(
        n=Count("comparisons", filter=Q(comparisons__is_gold=False), distinct=True),
        judged=Count("comparisons__judgments", distinct=True),
    ).select_related("candidate", "prompt_set")
    plan = PlanForm(request.GET if "target" in request.GET else None)
    context = {
        "studies": rows,
        "systems": comparable_systems().order_by("-kind", "name"),
        "prompt_sets": PromptSet.objects.all(),
        "plan_form": plan,
        "plans": plan.plans() if plan.is_bound and plan.is_valid() else None,
        "plan_error": first_error(plan) if plan.is_bound and not plan.is_valid() else "",
    }
    return render(request, "annotation/studies.html", context)


@staff_required
def study_detail(request, name: str):
    study = get_object_or_404(Study.objects.select_related("candidate", "prompt_set"), name=name)
    agreement = study_agreement(study)
    context: dict[str, Any] = {
        "study": study,
        "missing": missing_responses(study) if study.status == Study.Status.DRAFT else [],
        # one row per (comparison, judgment) after the join: count comparisons once each
        "counts": Comparison.objects.filter(study=study).aggregate(
            comparisons=Count("id", filter=Q(is_gold=False), distinct=True),
            gold=Count("id", filter=Q(is_gold=True), distinct=True),
            judged=Count("judgments"),
        ),
        "quality": annotator_quality(study),
        "agreement": agreement,
        "pairs": [{"a": a, "b": b, **v} for (a, b), v in agreement["per_pair"].items()],
        "annotators": study.annotators.order_by("username"),
        "blinding": blinding_warnings(study),
        "gold_sources": gold_sources(study),
    }
    context["gold_degraded"] = context["gold_sources"]["degraded copies"]
    context["gold_sources_text"] = describe_sources(context["gold_sources"])
    if counts := study_kind(study).counts:
        context["rating_counts"] = counts(study)
    for part in STUDY_PAGE_PARTS:
        context.update(part(request, study))
    return render(request, "annotation/study.html", context)


@staff_required
@require_POST
def study_start(request, name: str):
    study = get_object_or_404(Study, name=name)
    try:
        n = start_study(study)
        messages.success(request, f"study opened with {n} {study_kind(study).items}")
    except StudyError as exc:
        messages.error(request, str(exc))
    return redirect("annotation:study", name=name)


@staff_required
@require_POST
def study_exclude(request, name: str):
    study = get_object_or_404(Study, name=name)
    form = ExcludeForm(request.POST)
    if not form.is_valid():
        raise Http404("no such annotator")
    set_excluded(study, form.cleaned_data["user_id"], form.cleaned_data["exclude"])
    return redirect("annotation:study", name=name)


@staff_required
@require_POST
def study_invite(request, name: str):
    study = get_object_or_404(Study, name=name)
    form = InviteForm(request.POST)
    if not form.is_valid():
        messages.error(request, first_error(form, named=False))
        return redirect("annotation:study", name=name)
    email = form.cleaned_data["email"]
    user = members.invite_annotator(study, email)
    messages.success(request, f"invited {email} as {user.username}")
    return redirect("annotation:study", name=name)
