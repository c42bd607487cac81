import csv
import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.template.loader import render_to_string
from django.utils import timezone
from django.utils.safestring import mark_safe

from evalsite.annotation.models import Study
from evalsite.dashboard import data
from evalsite.dashboard.charts import stacked_bars
from evalsite.judging.models import JudgeJob


class Command(BaseCommand):
    help = "Write a self-contained HTML report of a study (Figures 1 and 2, tables, agreement, judge scorecard)."

    def add_arguments(self, parser):
        parser.add_argument("study")
        parser.add_argument("--out", type=Path, required=True)
        parser.add_argument("--rule", choices=["majority", "all"], default="majority")
        parser.add_argument("--job", type=int, help="the judge job for Figure 2 (default: the latest)")
        parser.add_argument("--no-paper", action="store_true", help="leave out the paper's numbers")
        parser.add_argument("--no-png", action="store_true", help="do not render PNG copies of the figures")

    def handle(self, *args, **opts):
        try:
            study = Study.objects.select_related("candidate", "prompt_set").get(name=opts["study"])
            job = JudgeJob.objects.get(pk=opts["job"], study=study) if opts["job"] else None
        except (Study.DoesNotExist, JudgeJob.DoesNotExist):
            raise CommandError(f"no study {opts['study']!r} (or no such judge job for it)") from None
        result = data.dashboard(study, opts["rule"], job)
        result["breakdowns"] = data.breakdowns(study, opts["rule"])
        paper = not opts["no_paper"]
        candidate = study.candidate.name
        figures = {
            "figure1": stacked_bars(
                result["human"], "Figure 1: human preference", candidate, data.PAPER["human"] if paper else None
            )
        }
        if result["judge"]:
            figures["figure2"] = stacked_bars(
                result["judge"]["figure"],
                f"Figure 2: {result['judge']['label']} as the annotator",
                candidate,
                data.PAPER["gpt4"] if paper else None,
            )
        out: Path = opts["out"]
        out.mkdir(parents=True, exist_ok=True)
        for key, svg in figures.items():
            (out / f"{key}.svg").write_text(svg)
            if not opts["no_png"]:
                from evalsite.dashboard.png import PngUnavailable, svg_to_png

                try:
                    (out / f"{key}.png").write_bytes(svg_to_png(svg))
                except PngUnavailable as exc:
                    self.stderr.write(f"no PNG: {exc}")
        rows = [{"figure": "1 (human)", **r} for r in result["human"]]
        if result["judge"]:
            rows += [{"figure": "2 (judge)", **r} for r in result["judge"]["figure"]]
        with (out / "figures.csv").open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(
                ["figure", "baseline", "n", "win", "tie", "loss", "win_low", "win_high", "loss_low", "loss_high"]
            )
            for r in rows:
                wl, wh = r["win_ci"] or ("", "")
                ll, lh = r["loss_ci"] or ("", "")
                writer.writerow([r["figure"], r["baseline"], r["n"], r["win"], r["tie"], r["loss"], wl, wh, ll, lh])
        (out / "figures.json").write_text(json.dumps(rows, indent=2, default=str))
        html = render_to_string(
            "dashboard/report.html",
            {
                **result,
                "figure1": mark_safe(figures["figure1"]),
                "figure2": mark_safe(figures.get("figure2", "")),
                "paper_agreement": data.PAPER_AGREEMENT,
                "generated": timezone.now(),
            },
        )  # noqa: S308 (the SVG is built from escaped values)
        (out / "index.html").write_text(html)
        self.stdout.write(self.style.SUCCESS(f"report written to {out / 'index.html'}"))
