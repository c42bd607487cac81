from django.db.models import Count, Q
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from evalsite.catalog.models import Prompt, PromptSet, Response
from evalsite.core.decorators import staff_required
from evalsite.generations.models import GenerationJob


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


@staff_required
def browse_set(request, name: str):
    prompt_set = get_object_or_404(PromptSet, name=name)
    prompts = prompt_set.prompts.annotate(n=Count("responses")).order_by("id")
    return render(request, "generations/browse_set.html", {"prompt_set": prompt_set, "prompts": prompts})


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
