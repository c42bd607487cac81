import json
from urllib.parse import urlencode

from django.contrib.auth.decorators import login_required
from django.db.models import Count
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.safestring import mark_safe

from evalsite.annotation.kinds import study_kind
from evalsite.annotation.models import Study
from evalsite.catalog.models import PromptSet, System
from evalsite.core.decorators import staff_required
from evalsite.core.figures import FIGURES, Chart, for_subject
from evalsite.dashboard import data, figures, ranking, ratings
from evalsite.dashboard.png import PngUnavailable, svg_to_png
from evalsite.judging.models import JudgeJob

RANKED = [Study.Kind.RANKING, Study.Kind.ARENA]  # studies whose page is a ranking (ranking.py)


@login_required
def home(request):
    """The site's front page: staff see what is loaded, annotators go to their studies."""
    if not request.user.is_staff:
        return redirect("annotation:home")
    context = {
        "start": start_here(),
        "prompt_sets": PromptSet.objects.annotate(n=Count("prompts")),
        "systems": System.objects.annotate(n=Count("responses")),
    }
    return render(request, "dashboard/home.html", context)


def start_here(most: int = 3) -> list[dict]:
    """The newest studies (the demo's among them) and, for each, the next thing to do: start it,
    bring people to vote, run the judge, or read its figures."""
    rows = []
    studies = Study.objects.select_related("candidate").order_by("-created_at")[:most]
    for study in studies:
        kind = study_kind(study)
        if kind.pairs:
            items = study.comparisons.filter(is_gold=False)
            total, done = items.count(), items.filter(completed_at__isnull=False).count()
        else:
            total, done = study.rating_items.count(), study.rating_items.filter(ratings_done__gte=study.overlap).count()
        judged = kind.pairs and study.judge_jobs.filter(status="done").exists()
        if study.status == Study.Status.DRAFT:
            step = "start it on its page (it checks every answer is there first)"
        elif done == 0:
            step = "bring people to vote: one-time links or a crowd link from its page; annotators answer at /annotate/"
        elif kind.pairs and not judged:
            step = f"run the judge over it: manage.py judge --study {study.name} (Figure 2)"
        else:
            step = f"read its figures on the dashboard; manage.py study status {study.name} says when it knows enough"
        rows.append({"study": study, "kind": kind, "done": done, "total": total, "step": step})
    return rows


def _study_and_job(request, name: str) -> tuple[Study, JudgeJob | None]:
    """The study of the address and the judge job it asks for (?job=), if any."""
    study = get_object_or_404(Study.objects.select_related("candidate"), name=name)
    job = None
    if request.GET.get("job"):
        if not request.GET["job"].isdigit():
            raise Http404("job must be a judge job's number")
        job = get_object_or_404(JudgeJob, pk=request.GET["job"], study=study)
    return study, job


def _figures(request, name: str, details: bool = True) -> figures.StudyFigures:
    study, job = _study_and_job(request, name)
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
    ratings = data.absolute_ratings()  # one summary per rating job, for the two charts and the table
    charts = {key: FIGURES[key].draw(ratings) for key in ("quality", "helpfulness")}
    context = {
        "studies": Study.objects.exclude(status="draft"),
        "leaderboard": data.leaderboard(),
        # the charts are built from escaped values
        **{f"{key}_chart": mark_safe(chart.svg) if chart else "" for key, chart in charts.items()},  # noqa: S308
        "ratings": ratings,
    }
    return render(request, "dashboard/index.html", context)


@staff_required
def study(request, name: str):
    graded = _graded_study(name)
    if graded is not None:
        return _rating_study(request, graded)
    ranked = Study.objects.filter(name=name, kind__in=RANKED).first()
    if ranked is not None:
        return _ranking_study(request, ranked)
    if request.GET.get("panel") == "agreement":  # the second request: the tables that scan every judgment
        study, job = _study_and_job(request, name)
        panel = data.agreement(study, request.GET.get("rule", "majority"), job)
        return render(request, "dashboard/_agreement.html", panel)
    if request.GET.get("panel") == "evidence":  # the other: calibration, length and style control
        study, job = _study_and_job(request, name)
        panel = data.evidence_panel(study, request.GET.get("rule", "majority"), job)
        return render(request, "dashboard/_evidence.html", panel)
    built = _figures(request, name, details=False)
    links = {"link": _drill_link(name), "judge_link": _drill_link(name, built.judge["job"] if built.judge else None)}
    svgs = {k: mark_safe(v) for k, v in built.svgs(**links).items()}  # noqa: S308 (escaped values)
    template = "dashboard/_panels.html" if request.GET.get("fragment") else "dashboard/study.html"
    context = {
        **built.result,
        **svgs,
        "paper": built.paper,
        "human_table": built.human_table(),
        "figure1_notes": built.notes["figure1"],  # drawn under the figure too; here readable on a phone
        "paper_agreement": data.PAPER_AGREEMENT,
        "jobs": built.study.judge_jobs.all(),
        "precision": built.result["evidence"]["status"],
    }
    return render(request, template, context)


def _ranking_study(request, study: Study):
    """A ranking study: each system's rank-set from people and judge together, beside the people's
    alone and the judge's alone; what settles the study's question; the pairs' shares."""
    _, job = _study_and_job(request, study.name)
    result = ranking.ranking(study, job, style=True)
    context = {
        "study": study,
        "result": result,
        "rows": result.rows(),
        "jobs": study.judge_jobs.all(),
        "goal": Study.RankingGoal(study.ranking_goal or "top").label,
    }
    return render(request, "dashboard/ranking.html", context)


def _graded_study(name: str) -> Study | None:
    """The study of this name when its items are not pairs (a rating study), else None."""
    study = Study.objects.filter(name=name).select_related("candidate", "prompt_set").first()
    return study if study is not None and not study_kind(study).pairs else None


def _rating_study(request, study: Study):
    """Figure 3: people's Fail / Pass / Excellent shares with intervals, beside the judge's grades
    of the same responses and the paper's; agreement; the safe share on safety prompts."""
    result = ratings.figure_3(study)
    chart = figures.figure_3_chart(study, result, paper=request.GET.get("paper", "1") == "1")
    context = {"study": study, "chart": mark_safe(chart.svg), **result}  # noqa: S308 (escaped values)
    return render(request, "dashboard/rating.html", context)


@staff_required
def export(request, name: str, fmt: str):
    graded = _graded_study(name)
    if graded is not None:  # its figures from the registry: figure3.svg, .png, .csv, .json
        key = fmt.partition(".")[0] if "." in fmt else None
        figure = next((f for f in for_subject(study_kind(graded).figures) if key in (None, f.key)), None)
        chart = figure.draw(graded, paper=request.GET.get("paper", "1") == "1") if figure else None
        return _export_chart(name, fmt, chart)
    ranked = Study.objects.filter(name=name, kind__in=RANKED).first()
    if ranked is not None:
        return _export_ranking(request, ranked, fmt)
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


def _export_ranking(request, study: Study, fmt: str) -> HttpResponse:
    """A ranking study's rankings as JSON (with its answer and pairs) or CSV (one row a system)."""
    _, job = _study_and_job(request, study.name)
    result = ranking.ranking(study, job, style=True)
    if fmt == "json":
        return HttpResponse(json.dumps(ranking.as_dict(result), indent=2), content_type="application/json")
    if fmt == "csv":
        response = HttpResponse(content_type="text/csv")
        response["Content-Disposition"] = f'attachment; filename="{study.name}-ranking.csv"'
        ranking.write_csv(result, response)
        return response
    return HttpResponse(json.dumps({"error": f"no export {fmt}"}), status=404, content_type="application/json")


def _export_chart(name: str, fmt: str, chart: Chart | None) -> HttpResponse:
    """One registered figure's exports (``figure3.svg``, ``.png``, ``.csv``, ``.json``; ``csv`` and
    ``json`` alone as for a pairwise study): the CSV leads with its notes as # lines."""
    key, _, kind = fmt.partition(".")
    if not kind and chart is not None:
        key, kind = chart.key, fmt
    if chart is None or key != chart.key or kind not in ("svg", "png", "csv", "json"):
        return HttpResponse(json.dumps({"error": f"no export {fmt}"}), status=404, content_type="application/json")
    if kind == "json":
        return HttpResponse(chart.json(), content_type="application/json")
    if kind == "csv":
        response = HttpResponse(chart.csv(), content_type="text/csv")
        response["Content-Disposition"] = f'attachment; filename="{name}-{chart.key}.csv"'
        return response
    if kind == "svg":
        response = HttpResponse(chart.svg, content_type="image/svg+xml")
    else:
        try:
            response = HttpResponse(svg_to_png(chart.svg), content_type="image/png")
        except PngUnavailable as exc:
            return HttpResponse(str(exc), status=501, content_type="text/plain")
    response["Content-Disposition"] = f'attachment; filename="{name}-{fmt}"'
    return response
