"""The arena's pages: the person's prompt, the two anonymous answers as they are written, the vote
and then the names; staff's moderation queue."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from evalsite.annotation.models import Study
from evalsite.answering.models import ChatTurn
from evalsite.arena import services
from evalsite.arena.models import Battle
from evalsite.core.decorators import staff_required
from evalsite.core.paper import LIMA_CHOICES
from evalsite.crowd import services as crowd


def _arena(request, name: str) -> Study:
    """The arena of the address, for one of its people (an annotator or crowd participant it was
    opened to) or staff; anyone else: a 404."""
    study = get_object_or_404(Study, name=name, kind=Study.Kind.ARENA)
    if not (request.user.is_staff or study.annotators.filter(pk=request.user.pk).exists()):
        raise Http404("no such arena")
    return study


def _own_battle(request, pk: int) -> Battle:
    """The person's own battle; anyone else's is a 404 (no probing)."""
    try:
        return Battle.objects.select_related(
            "study", "first_system", "second_system", "first_conversation", "second_conversation"
        ).get(pk=pk, person=request.user)
    except Battle.DoesNotExist:
        raise Http404("no such battle") from None


@login_required
def home(request, name: str):
    study = _arena(request, name)
    current = services.open_battle(study, request.user)
    if current is not None:
        return redirect("arena:battle", pk=current.pk)
    context: dict = {"study": study}
    participant = crowd.session_participant(request.session, request.user, study)
    if participant is not None:  # arrived by a crowd link: its quota of battles, then its end page
        where = crowd.stage(participant)
        if where.name != "work":
            return redirect("crowd:next", token=participant.link.token)
        context["crowd"] = {"battle": where.done + 1, "quota": participant.link.quota}
    if request.method == "POST":
        try:
            battle = services.start_battle(
                study, request.user, request.POST.get("prompt", ""), request.POST.get("topic", "")
            )
        except services.ArenaError as exc:
            messages.error(request, str(exc))
            return render(request, "arena/home.html", {**context, "prompt": request.POST.get("prompt", "")})
        return redirect("arena:battle", pk=battle.pk)
    return render(request, "arena/home.html", {**context, "voted": services.voted(study, request.user)})


@login_required
def battle(request, pk: int):
    battle = _own_battle(request, pk)
    left, right = services.sides(battle)
    turns = [
        {"left": a, "right": b}
        for a, b in zip(left.turns.order_by("index"), right.turns.order_by("index"), strict=False)
    ]
    writing = any(t[side].state in ChatTurn.UNFINISHED for t in turns for side in ("left", "right"))
    failed = any(t[side].state == ChatTurn.State.FAILED for t in turns for side in ("left", "right"))
    names = None
    if battle.voted_at is not None:  # only now: which system wrote which answer
        first, second = battle.first_system.name, battle.second_system.name
        names = {"left": first, "right": second} if battle.first_on_left else {"left": second, "right": first}
    context = {
        "battle": battle,
        "study": battle.study,
        "turns": turns,
        "writing": writing,
        "failed": failed,
        "names": names,
        "choices": LIMA_CHOICES,
        "picked": _picked(battle),
    }
    return render(request, "arena/battle.html", context)


def _picked(battle: Battle) -> str:
    """What the person chose, as they saw it, for the page after the vote."""
    return {"a": "A (left)", "b": "B (right)", "tie": "neither", "both_bad": "both are bad"}.get(battle.choice, "")


@login_required
def turn(request, pk: int, side: str, index: int):
    """One side's answer as it is written (the page reads both every 250 ms): its text and state,
    never its system."""
    battle = _own_battle(request, pk)
    if side not in ("left", "right"):
        raise Http404("no such side")
    left, right = services.sides(battle)
    found = get_object_or_404(ChatTurn, conversation=left if side == "left" else right, index=index)
    return JsonResponse({"state": found.state, "text": found.assistant_text, "error": found.error})


def _act(request, pk: int, act) -> Battle | None:
    """Do ``act`` on the person's own battle; what cannot be done is said on the page. Returns the
    battle, or None when refused."""
    battle = _own_battle(request, pk)
    try:
        act(battle)
    except services.ArenaError as exc:
        messages.error(request, str(exc))
        return None
    return battle


@login_required
@require_POST
def vote(request, pk: int):
    _act(request, pk, lambda battle: services.vote(battle, request.POST.get("choice", "")))
    return redirect("arena:battle", pk=pk)


@login_required
@require_POST
def follow_up(request, pk: int):
    _act(request, pk, lambda battle: services.follow_up(battle, request.POST.get("message", "")))
    return redirect("arena:battle", pk=pk)


@login_required
@require_POST
def abandon(request, pk: int):
    """A battle a system failed to answer, left: the person may ask again."""
    battle = _act(request, pk, services.abandon)
    return redirect("arena:home", name=battle.study.name) if battle else redirect("arena:battle", pk=pk)


@staff_required
def moderation(request, name: str):
    """The prompts waiting for review (oldest first), each approved or rejected; and the latest
    decided, for the record."""
    study = get_object_or_404(Study, name=name, kind=Study.Kind.ARENA)
    if request.method == "POST":
        target = Battle.objects.filter(study=study, pk=request.POST.get("battle") or 0).first()
        if target is None:
            messages.error(request, "no such battle in this arena")
        else:
            try:
                services.review(target, approve=request.POST.get("decision") == "approve")
            except services.ArenaError as exc:
                messages.error(request, str(exc))
        return redirect("arena:moderation", name=name)
    pending = Battle.objects.filter(study=study, review=Battle.Review.PENDING).select_related("person").order_by("pk")
    decided = (
        Battle.objects.filter(study=study, review__in=[Battle.Review.APPROVED, Battle.Review.REJECTED])
        .select_related("person")
        .order_by("-pk")[:50]
    )
    return render(request, "arena/moderation.html", {"study": study, "pending": pending, "decided": decided})


def study_page_part(request, study: Study) -> dict:
    """The staff's study page, for an arena: where people ask, the prompts waiting for review."""
    if study.kind != Study.Kind.ARENA:
        return {}
    battles = Battle.objects.filter(study=study)
    return {
        "arena": {
            "battles": battles.count(),
            "voted": battles.filter(voted_at__isnull=False).count(),
            "pending": battles.filter(review=Battle.Review.PENDING).count(),
        }
    }
