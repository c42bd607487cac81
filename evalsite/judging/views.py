from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from evalsite.core.decorators import staff_required
from evalsite.judging.models import JudgeJob, JudgeVerdict, RatingJob
from evalsite.judging.results import judge_summary, rating_job_summary


@staff_required
def job_list(request):
    context = {
        "judge_jobs": JudgeJob.objects.select_related("study", "config")[:100],
        "rating_jobs": RatingJob.objects.select_related("system", "prompt_set", "config")[:100],
    }
    return render(request, "judging/job_list.html", context)


@staff_required
def job_detail(request, pk: int):
    job = get_object_or_404(JudgeJob.objects.select_related("study", "config"), pk=pk)
    verdicts = (
        JudgeVerdict.objects.filter(job=job)
        .select_related("call", "comparison__prompt", "comparison__baseline")
        .order_by("comparison_id", "order")
    )
    page = Paginator(verdicts, 50).get_page(request.GET.get("page"))
    return render(request, "judging/job_detail.html", {"job": job, "summary": judge_summary(job), "page": page})


@staff_required
def rating_detail(request, pk: int):
    job = get_object_or_404(RatingJob.objects.select_related("system", "prompt_set", "config"), pk=pk)
    ratings = job.ratings.select_related("call", "response__prompt").order_by("response_id", "sample")
    page = Paginator(ratings, 50).get_page(request.GET.get("page"))
    return render(request, "judging/rating_detail.html", {"job": job, "summary": rating_job_summary(job), "page": page})


@staff_required
@require_POST
def job_cancel(request, pk: int):
    get_object_or_404(JudgeJob, pk=pk).request_cancel()
    return redirect("judging:job_detail", pk=pk)
