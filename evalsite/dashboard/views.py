import json
from urllib.parse import urlencode

from django.contrib.auth.decorators import login_required
from django.db.models import Count
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.safestring import mark_safe

from evalsite.annotation.models import Study
from evalsite.catalog.models import PromptSet, System
from evalsite.core.charts import means_with_intervals, stacked_bars
from evalsite.core.decorators import staff_required
from evalsite.dashboard import data, figures, ratings
from evalsite.dashboard.png import PngUnavailable, svg_to_png
from evalsite.dashboard.ratings import PAPER_FIGURE_3
from evalsite.judging.models import JudgeJob


@login_required
def home(request):
    """The site's front page: staff see what is loaded, annotators go to their studies."""
    if not request.user.is_staff:
        return redirect("annotation:home")
    context = {
        "prompt_sets": PromptSet.objects.annotate(n=Count("prompts")),
        "systems": System.objects.annotate(n=Count("responses")),
    }
    return render(request, "dashboard/home.html", context)


def _figures(request, name: str, details: bool = True) -> figures.StudyFigures:
    study = get_object_or_404(Study.objects.select_related("candidate"), name=name)
    job = None
    if request.GET.get("job"):
        if not request.GET["job"].isdigit():
            raise Http404("job must be a judge job's number")
        job = get_object_or_404(JudgeJob, pk=request.GET["job"], study=study)
    paper = request.GET.get("paper", "1") == "1"
    return figures.build(study, request.GET.get("rule", "majority"), job, paper=paper, details=details)


def _drill_link(study_name: str, job: JudgeJob | None = None):
    def link(baseline: str, outcome: str) -> str:
        query = {"baseline": baseline, "outcome": outcome} | ({"job": job.pk} if job else {})
        return reverse("dashboard:drill", args=[study_name]) + "?" + urlencode(query)

    return link


@staff_required
def drill(request, name: str):
    study = get_object_or_404(Study, name=name)
    baseline, outcome = request.GET.get("baseline", ""), request.GET.get("outcome", "")
    if outcome not in ("candidate", "tie", "baseline"):
        return HttpResponse("outcome must be candidate, tie or baseline", status=400)
    job = None
    if request.GET.get("job"):  # Figure 2's bars: the judge's outcome, not the people's
        if not request.GET["job"].isdigit():
            return HttpResponse("job must be a judge job's number", status=400)
        job = get_object_or_404(JudgeJob, pk=request.GET["job"], study=study)
    rows = data.drill_down(study, baseline, outcome, job=job)
    context = {"study": study, "baseline": baseline, "outcome": outcome, "rows": rows, "job": job}
    return render(request, "dashboard/drill.html", context)


@staff_required
def index(request):
    ratings = data.absolute_ratings()
    fpe = [
        {
            "baseline": f"{r['job'].system} ({r['job'].prompt_set})",
            "n": r["ratings"],
            "win": r["shares"]["excellent"],
            "tie": r["shares"]["pass"],
            "loss": r["shares"]["fail"],
        }
        for r in ratings
        if r["job"].kind == "fpe"
    ]
    likert = [
        {"label": f"{r['job'].system} ({r['job'].prompt_set})", "mean": r["mean"], "ci95": r["ci95"]}
        for r in ratings
        if r["job"].kind == "likert" and r.get("mean") is not None
    ]
    context = {
        "studies": Study.objects.exclude(status="draft"),
        "leaderboard": data.leaderboard(),
        "fpe_chart": mark_safe(
            stacked_bars(fpe, "Absolute quality (Figures 3 and 7)", "", legend=["Excellent", "Pass", "Fail"])
        )
        if fpe
        else "",
        "likert_chart": mark_safe(means_with_intervals(likert, "Helpfulness 1-6, mean and 95% CI (Figures 5 and 6)"))
        if likert
        else "",
        "ratings": ratings,
    }  # noqa: S308 (the charts are built from escaped values)
    return render(request, "dashboard/index.html", context)


@staff_required
def study(request, name: str):
    rated = Study.objects.filter(name=name, kind=Study.Kind.RATING).select_related("candidate", "prompt_set").first()
    if rated is not None:
        return _rating_study(request, rated)
    if request.GET.get("panel") == "agreement":  # the second request: the tables that scan every judgment
        built = _figures(request, name, details=True)
        result = {**built.result, "breakdowns": data.breakdowns(built.study, data.counting(built.rule))}
        return render(request, "dashboard/_agreement.html", {**result, "paper_agreement": data.PAPER_AGREEMENT})
    built = _figures(request, name, details=False)
    links = {"link": _drill_link(name), "judge_link": _drill_link(name, built.judge["job"] if built.judge else None)}
    svgs = {k: mark_safe(v) for k, v in built.svgs(**links).items()}  # noqa: S308 (escaped values)
    template = "dashboard/_panels.html" if request.GET.get("fragment") else "dashboard/study.html"
    context = {
        **built.result,
        **svgs,
        "paper": built.paper,
        "human_table": built.human_table(),
        "paper_agreement": data.PAPER_AGREEMENT,
        "jobs": built.study.judge_jobs.all(),
        "precision": built.result["evidence"]["status"],
    }
    return render(request, template, context)


def _rating_study(request, study: Study):
    """Figure 3: people's Fail / Pass / Excellent shares with intervals, beside the judge's grades
    of the same responses and the paper's; agreement; the safe share on safety prompts."""
    result = ratings.figure_3(study)
    chart = stacked_bars(
        result["rows"],
        f"Figure 3: {study.candidate.name}'s answers graded",
        "",
        paper={"LIMA 65B, the authors": PAPER_FIGURE_3} if request.GET.get("paper", "1") == "1" else None,
        legend=["Excellent", "Pass", "Fail"],
        paper_title="The paper (50 prompts, graded by the authors)",
    )
    context = {"study": study, "chart": mark_safe(chart), **result}  # noqa: S308 (escaped values)
    return render(request, "dashboard/rating.html", context)


@staff_required
def export(request, name: str, fmt: str):
    built = _figures(request, name)
    if fmt == "json":
        return HttpResponse(built.json(), content_type="application/json")
    if fmt == "csv":
        response = HttpResponse(content_type="text/csv")
        response["Content-Disposition"] = f'attachment; filename="{name}-figures.csv"'
        built.write_csv(response)
        return response
    svgs = built.svgs(link=_drill_link(name), judge_link=_drill_link(name, built.judge["job"] if built.judge else None))
    key, _, kind = fmt.partition(".")
    if key in svgs and kind in ("svg", "png"):
        if kind == "svg":
            response = HttpResponse(svgs[key], content_type="image/svg+xml")
        else:
            try:
                response = HttpResponse(svg_to_png(svgs[key]), content_type="image/png")
            except PngUnavailable as exc:
                return HttpResponse(str(exc), status=501, content_type="text/plain")
        response["Content-Disposition"] = f'attachment; filename="{name}-{fmt}"'
        return response
    return HttpResponse(json.dumps({"error": f"no export {fmt}"}), status=404, content_type="application/json")
