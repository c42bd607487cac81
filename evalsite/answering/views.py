from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import Count, Q
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_POST

from evalsite.answering import chat
from evalsite.answering.models import ChatTurn, Conversation, GenerationJob
from evalsite.catalog.models import Prompt, PromptSet, Response, System
from evalsite.core.decorators import staff_required
from evalsite.core.paper import GRADE_BUTTONS


def job_row(job: GenerationJob) -> dict:
    eta = job.eta_seconds
    return {
        "id": job.pk,
        "system": job.system.name,
        "prompt_set": job.prompt_set.name,
        "status": job.status,
        "done": job.progress_done,
        "total": job.progress_total,
        "percent": round(100 * job.fraction_done, 1),
        "rate": f"{job.rate:.1f} {job.rate_unit}" if job.rate else "",
        "eta": f"{eta:.0f} s" if eta is not None else "",
        "detail": job.status_detail,
        "failures": len(job.failures),
        "active": job.is_active,
    }


@staff_required
def job_list(request):
    jobs = GenerationJob.objects.select_related("system", "prompt_set")[:100]
    return render(request, "generations/job_list.html", {"rows": [job_row(j) for j in jobs]})


@staff_required
def job_list_json(request):
    jobs = GenerationJob.objects.select_related("system", "prompt_set")[:100]
    return JsonResponse({"jobs": [job_row(j) for j in jobs]})


@staff_required
def job_detail(request, pk: int):
    job = get_object_or_404(GenerationJob.objects.select_related("system", "prompt_set"), pk=pk)
    empty = (
        Response.objects.filter(system=job.system, prompt__prompt_set=job.prompt_set)
        .filter(Q(text="") | Q(notes="empty response"))
        .select_related("prompt")
        .order_by("prompt_id", "sample_index")
    )
    context = {"job": job, "row": job_row(job), "empty": empty, "sampling_notes": job.system.sampling_notes}
    return render(request, "generations/job_detail.html", context)


@staff_required
@require_POST
def job_cancel(request, pk: int):
    job = get_object_or_404(GenerationJob, pk=pk)
    job.request_cancel()
    return redirect("generations:job_detail", pk=pk)


@staff_required
def browse_sets(request):
    sets = PromptSet.objects.annotate(n=Count("prompts"))
    return render(request, "generations/browse_sets.html", {"sets": sets})


PROMPTS_PER_PAGE = 200


@staff_required
def browse_set(request, name: str):
    """A prompt set, PROMPTS_PER_PAGE prompts a page (a 15,000-prompt set in one page was 3.5 MB)."""
    prompt_set = get_object_or_404(PromptSet, name=name)
    prompts = prompt_set.prompts.annotate(n=Count("responses")).order_by("id")
    page = Paginator(prompts, PROMPTS_PER_PAGE).get_page(request.GET.get("page"))
    return render(request, "generations/browse_set.html", {"prompt_set": prompt_set, "page": page})


@staff_required
def browse_prompt(request, pk: int):
    """One prompt, every system's answer side by side."""
    prompt = get_object_or_404(Prompt.objects.select_related("prompt_set"), pk=pk)
    responses = (
        Response.objects.filter(prompt=prompt)
        .select_related("system")
        .order_by("system__kind", "system__name", "sample_index")
    )
    ids = list(prompt.prompt_set.prompts.order_by("id").values_list("id", flat=True))
    index = ids.index(prompt.pk)
    context = {
        "prompt": prompt,
        "responses": responses,
        "previous": ids[index - 1] if index > 0 else None,
        "next": ids[index + 1] if index + 1 < len(ids) else None,
        "position": index + 1,
        "count": len(ids),
    }
    return render(request, "generations/browse_prompt.html", context)


# -- live conversations (Figure 7) ----------------------------------------------------------------


@staff_required
def chat_index(request):
    if request.method == "POST":
        system = System.objects.filter(name=request.POST.get("system", "")).first()
        if system is None:
            messages.error(request, f"no system named {request.POST.get('system', '')!r}")
            return redirect("generations:chat_index")
        try:
            conversation = chat.start(system, request.user)
        except chat.ChatError as exc:
            messages.error(request, str(exc))
            return redirect("generations:chat_index")
        return redirect("generations:chat", pk=conversation.pk)
    figure = chat.figure_7()
    chart = chat.figure_7_chart(figure)
    context = {
        # the staff's own conversations (an arena's answers are conversations too: evalsite/arena/)
        "conversations": Conversation.objects.filter(staff__is_staff=True)
        .select_related("system", "staff")
        .annotate(n=Count("turns"))[:100],
        "systems": System.objects.exclude(backend="imported").order_by("name"),
        "chart": mark_safe(chart.svg) if chart else "",  # noqa: S308 - built from escaped values
        "turns": figure["turns"],
    }
    return render(request, "generations/chat_index.html", context)


@staff_required
def chat_view(request, pk: int):
    conversation = get_object_or_404(Conversation.objects.select_related("system"), pk=pk)
    if request.method == "POST":
        try:
            if "grade" in request.POST:
                index = request.POST.get("index", "")
                chat.grade(conversation, int(index) if index.isdigit() else -1, request.POST["grade"])
            else:
                chat.request_answer(chat.send(conversation, request.POST.get("message", "")))
        except chat.ChatError as exc:
            messages.error(request, str(exc))
        return redirect("generations:chat", pk=pk)
    turns = list(conversation.turns.order_by("index"))
    writing = next((t for t in turns if t.state in ChatTurn.UNFINISHED), None)
    ungraded = next((t for t in turns if t.state == ChatTurn.State.DONE and not t.grade), None)
    context = {
        "conversation": conversation,
        "turns": turns,
        "writing": writing,
        "ungraded": ungraded,
        "grades": GRADE_BUTTONS,
    }
    return render(request, "generations/chat.html", context)


@staff_required
def chat_turn(request, pk: int, index: int):
    """The answer of one turn as it is written (the chat page reads it every few hundred ms)."""
    turn = get_object_or_404(ChatTurn, conversation_id=pk, index=index)
    return JsonResponse(
        {"state": turn.state, "label": turn.get_state_display(), "text": turn.assistant_text, "error": turn.error}
    )
