from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import login
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render

from evalsite.annotation import claims, studies
from evalsite.annotation.forms import first_error
from evalsite.annotation.models import Study
from evalsite.annotation.pages import progress_for, render_item
from evalsite.core.decorators import staff_required
from evalsite.core.login import client_address
from evalsite.crowd import services
from evalsite.crowd.forms import CrowdLinkForm
from evalsite.crowd.models import CrowdLink, Participant
from evalsite.crowd.platforms import CHOICES as PLATFORM_CHOICES

SESSION_KEY, TOKEN_KEY = services.SESSION_KEY, services.TOKEN_KEY


def arrive(request, token: str):
    """/s/<token>/?PROLIFIC_PID=...: the participant for that id, logged in, sent to their next item."""
    link = get_object_or_404(CrowdLink.objects.select_related("study"), token=token)
    params = request.GET.dict()
    switching = params.pop("switch", "") == "1"
    if request.user.is_authenticated and not switching and not _is_participant(request.user, link, params):
        # someone else is logged in in this browser (staff trying the link, say): ask before their
        # session is replaced by the participant's
        query = request.GET.copy()
        query["switch"] = "1"
        context = {"user": request.user, "study": link.study, "go": "?" + query.urlencode()}
        return render(request, "crowd/switch.html", context)
    try:
        participant = services.arrive(link, params, client_address(request))
    except services.Preview:
        return render(request, "crowd/preview.html", {"study": link.study, "link": link})
    except services.CrowdError as exc:
        return render(request, "crowd/problem.html", {"problem": str(exc)}, status=400)
    if request.user.is_authenticated and request.user.pk != participant.user_id:
        request.session.flush()  # someone else's session in this browser, replaced as they agreed
    login(request, participant.user, backend="evalsite.core.login.RateLimitedModelBackend")
    request.session[SESSION_KEY] = participant.pk
    request.session[TOKEN_KEY] = token  # the item pages send them back to this flow
    return redirect("crowd:next", token=token)


def _is_participant(user, link: CrowdLink, params: dict) -> bool:
    """Whether the logged-in user is the participant this visit names (a participant resuming)."""
    found = Participant.objects.filter(link=link, user=user).values_list("external_id", flat=True).first()
    return found is not None and found in params.values()


def _participant(request, token: str) -> Participant | None:
    participant = services.session_participant(request.session, request.user)
    return participant if participant is not None and participant.link.token == token else None


def next_item(request, token: str):
    participant = _participant(request, token)
    if participant is None:
        return render(
            request,
            "crowd/problem.html",
            {"problem": "this page needs the study's link from your platform; open the study from there again"},
            status=403,
        )
    study = participant.link.study
    where = services.stage(participant)
    if where.name not in ("screening", "work"):
        return _end(request, participant, where)
    if study.kind == Study.Kind.ARENA:  # they bring their prompts there; it sends them back here at the quota
        return redirect("arena:home", name=study.name)
    try:
        screening = where.name == "screening"
        assignment = claims.claim_next(study, request.user, member_checked=True, gold_only=screening)
    except studies.StudyError as exc:
        return render(request, "crowd/problem.html", {"problem": str(exc)}, status=409)
    if assignment is None:
        return render(request, "annotation/done.html", {"study": study, **progress_for(study, request.user)})
    assignment.comparison.study = study
    quota = participant.link.quota
    progress = {"done": where.done, "target": quota, "percent": min(100, round(100 * where.done / quota))}
    return render_item(request, assignment, progress)


def _end(request, participant: Participant, where: services.Stage):
    code = services.end_code(participant)
    context = {
        "participant": participant,
        "code": code,
        "return_url": participant.link.return_url(code),
        "screened_out": participant.status == Participant.Status.SCREENED_OUT,
        "returned": participant.status == Participant.Status.RETURNED,
        "done": where.done,
    }
    return render(request, "crowd/end.html", context)


def study_page_part(request, study: Study) -> dict:
    """The study page's crowd card: its link (if made) and the URL to paste into the platform."""
    link = getattr(study, "crowd_link", None)  # the reverse one-to-one raises when there is none
    context: dict = {"crowd_link": link, "platforms": PLATFORM_CHOICES}
    if link is not None:
        context["crowd_url"] = link.study_url(request.build_absolute_uri("/"))
        unverified = link.participants.filter(platform_check=Participant.PlatformCheck.UNKNOWN)
        context["crowd_unverified"] = list(unverified.values_list("external_id", flat=True))
    return context


@staff_required
def export(request, name: str):
    link = get_object_or_404(CrowdLink.objects.select_related("study"), study__name=name)
    response = HttpResponse(services.export_csv(link), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{link.study.name}-participants.csv"'
    return response


@staff_required
def settings_form(request, name: str):
    """The study page's crowd form: make or change the link."""
    study = get_object_or_404(Study, name=name)
    if request.method == "POST":
        form = CrowdLinkForm(request.POST)
        if not form.is_valid():
            messages.error(request, first_error(form))
            return redirect("annotation:study", name=name)
        try:
            services.create_link(study, **form.cleaned_data)
        except services.CrowdError as exc:
            messages.error(request, str(exc))
    return redirect("annotation:study", name=name)
