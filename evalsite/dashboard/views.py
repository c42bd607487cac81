import csv
import json
from decimal import Decimal
from urllib.parse import urlencode

from django.contrib.auth.decorators import login_required
from django.db.models import Count
from django.http import HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.safestring import mark_safe

from evalsite.annotation.models import Study
from evalsite.catalog.models import PromptSet, System
from evalsite.core.decorators import staff_required
from evalsite.dashboard import data
from evalsite.dashboard.charts import means_with_intervals, stacked_bars
from evalsite.dashboard.png import PngUnavailable, svg_to_png
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


def _context(request, name: str, details: bool = True) -> dict:
    study = get_object_or_404(Study.objects.select_related("candidate"), name=name)
    rule = request.GET.get("rule", "majority")
    if rule not in ("majority", "all"):
        rule = "majority"
    job = None
    if request.GET.get("job"):
        job = get_object_or_404(JudgeJob, pk=request.GET["job"], study=study)
    result = data.dashboard(study, rule, job, details=details)
    result["paper"] = request.GET.get("paper", "1") == "1"
    return result


def _figures(result: dict) -> dict:
    candidate = result["study"].candidate.name
    study_name = result["study"].name

    def drill(baseline: str, outcome: str) -> str:
        query = urlencode({"baseline": baseline, "outcome": outcome})
        return reverse("dashboard:drill", args=[study_name]) + "?" + query

    paper = data.PAPER["human"] if result["paper"] else None
    figures = {"figure1": stacked_bars(result["human"], "Figure 1: human preference", candidate, paper, link=drill)}
    if result["judge"]:
        label = result["judge"]["label"]
        figures["figure2"] = stacked_bars(
            result["judge"]["figure"],
            f"Figure 2: {label} as the annotator",
            candidate,
            data.PAPER["gpt4"] if result["paper"] else None,
        )
    return figures


@staff_required
def drill(request, name: str):
    study = get_object_or_404(Study, name=name)
    baseline, outcome = request.GET.get("baseline", ""), request.GET.get("outcome", "")
    if outcome not in ("candidate", "tie", "baseline"):
        return HttpResponse("outcome must be candidate, tie or baseline", status=400)
    rows = data.drill_down(study, baseline, outcome)
    return render(
        request, "dashboard/drill.html", {"study": study, "baseline": baseline, "outcome": outcome, "rows": rows}
    )


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
    if request.GET.get("panel") == "agreement":  # the second request: the tables that scan every judgment
        result = _context(request, name, details=True)
        result["breakdowns"] = data.breakdowns(result["study"], result["rule"])
        return render(request, "dashboard/_agreement.html", {**result, "paper_agreement": data.PAPER_AGREEMENT})
    result = _context(request, name, details=False)
    figures = {k: mark_safe(v) for k, v in _figures(result).items()}  # noqa: S308 (built from escaped values)
    template = "dashboard/_panels.html" if request.GET.get("fragment") else "dashboard/study.html"
    return render(
        request,
        template,
        {**result, **figures, "paper_agreement": data.PAPER_AGREEMENT, "jobs": result["study"].judge_jobs.all()},
    )


def _table(result: dict) -> list[dict]:
    rows = [{"figure": "1 (human)", "annotator": "people", **r} for r in result["human"]]
    if result["judge"]:
        rows += [{"figure": "2 (judge)", "annotator": result["judge"]["label"], **r} for r in result["judge"]["figure"]]
    return rows


@staff_required
def export(request, name: str, fmt: str):
    result = _context(request, name)
    rows = _table(result)
    if fmt == "json":
        payload = {
            "study": name,
            "rule": result["rule"],
            "figures": rows,
            "person_person": result["person_person"],
            "judge": None,
        }
        if result["judge"]:
            j = result["judge"]
            payload["judge"] = {
                "label": j["label"],
                "job": j["job"].pk,
                "method": j["method"],
                "policy": j["policy"],
                "one_order": j["one_order"],
                "counted": j["counted"],
                "dropped": j["dropped"],
                "warnings": j["warnings"],
                "consistency": j["consistency"],
                "scorecard": {k: float(v) if isinstance(v, Decimal) else v for k, v in j["scorecard"].items()},
                "person_judge": j["person_judge"],
            }
        payload["breakdowns"] = data.breakdowns(result["study"], result["rule"])
        payload["leaderboard"] = data.leaderboard()
        return JsonResponse(payload, json_dumps_params={"indent": 2, "default": str})
    if fmt == "csv":
        response = HttpResponse(content_type="text/csv")
        response["Content-Disposition"] = f'attachment; filename="{name}-figures.csv"'
        writer = csv.writer(response)
        writer.writerow(
            [
                "figure",
                "annotator",
                "baseline",
                "n",
                "votes",
                "win",
                "tie",
                "loss",
                "win_low",
                "win_high",
                "loss_low",
                "loss_high",
            ]
        )
        for r in rows:
            wl, wh = r["win_ci"] or ("", "")
            ll, lh = r["loss_ci"] or ("", "")
            writer.writerow(
                [
                    r["figure"],
                    r["annotator"],
                    r["baseline"],
                    r["n"],
                    r["votes"],
                    f"{r['win']:.4f}",
                    f"{r['tie']:.4f}",
                    f"{r['loss']:.4f}",
                    wl,
                    wh,
                    ll,
                    lh,
                ]
            )
        return response
    figures = _figures(result)
    key, _, kind = fmt.partition(".")
    if key in figures and kind in ("svg", "png"):
        if kind == "svg":
            response = HttpResponse(figures[key], content_type="image/svg+xml")
        else:
            try:
                response = HttpResponse(svg_to_png(figures[key]), content_type="image/png")
            except PngUnavailable as exc:
                return HttpResponse(str(exc), status=501, content_type="text/plain")
        response["Content-Disposition"] = f'attachment; filename="{name}-{fmt}"'
        return response
    return HttpResponse(json.dumps({"error": f"no export {fmt}"}), status=404, content_type="application/json")
