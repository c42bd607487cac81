from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.template.loader import render_to_string
from django.utils import timezone
from django.utils.safestring import mark_safe

from evalsite.annotation.kinds import study_kind
from evalsite.annotation.models import Study
from evalsite.dashboard import data, figures, ratings
from evalsite.dashboard.png import PngUnavailable, svg_to_png
from evalsite.judging.models import JudgeJob


class Command(BaseCommand):
    help = (
        "Write a self-contained HTML report of a study: Figures 1 and 2, tables, agreement, judge scorecard; for a "
        "rating study Figure 3, agreement and the safe share."
    )

    def add_arguments(self, parser):
        parser.add_argument("study")
        parser.add_argument("--out", type=Path, required=True)
        parser.add_argument(
            "--rule",
            choices=["majority", "all", "reliability"],
            default="majority",
            help="reliability: Figure 1's votes weighted by each annotator's Dawid-Skene reliability",
        )
        parser.add_argument("--job", type=int, help="the judge job for Figure 2 (default: the latest)")
        parser.add_argument("--no-paper", action="store_true", help="leave out the paper's numbers")
        parser.add_argument("--no-png", action="store_true", help="do not render PNG copies of the figures")

    def handle(self, *args, **opts):
        try:
            study = Study.objects.select_related("candidate", "prompt_set").get(name=opts["study"])
            job = JudgeJob.objects.get(pk=opts["job"], study=study) if opts["job"] else None
        except (Study.DoesNotExist, JudgeJob.DoesNotExist):
            raise CommandError(f"no study {opts['study']!r} (or no such judge job for it)") from None
        out = Path(opts["out"])
        out.mkdir(parents=True, exist_ok=True)
        if not study_kind(study).pairs:  # a rating study: Figure 3
            self._rating_report(study, out, opts)
            return
        built = figures.build(study, opts["rule"], job, paper=not opts["no_paper"])
        built.result["breakdowns"] = data.breakdowns(study, data.counting(built.rule))
        svgs = built.svgs()
        for key, svg in svgs.items():
            self._write_picture(out, key, svg, opts)
        with (out / "figures.csv").open("w", newline="") as handle:
            built.write_csv(handle)
        (out / "figures.json").write_text(built.json())
        html = render_to_string(
            "dashboard/report.html",
            {
                **built.result,
                "human_table": built.human_table(),
                "figure1": mark_safe(svgs["figure1"]),  # noqa: S308 (the SVG is built from escaped values)
                "figure2": mark_safe(svgs.get("figure2", "")),  # noqa: S308
                "paper_agreement": data.PAPER_AGREEMENT,
                "judge_flags": data.judge_flags(built.judge),
                "generated": timezone.now(),
            },
        )
        (out / "index.html").write_text(html)
        self.stdout.write(self.style.SUCCESS(f"report written to {out / 'index.html'}"))

    def _write_picture(self, out: Path, key: str, svg: str, opts: dict) -> None:
        (out / f"{key}.svg").write_text(svg)
        if not opts["no_png"]:
            try:
                (out / f"{key}.png").write_bytes(svg_to_png(svg))
            except PngUnavailable as exc:
                self.stderr.write(f"no PNG: {exc}")

    def _rating_report(self, study: Study, out: Path, opts: dict) -> None:
        """Figure 3 (core.figures' entry): its SVG, PNG, CSV and JSON, and the page's tables."""
        result = ratings.figure_3(study)
        chart = figures.figure_3_chart(study, result, paper=not opts["no_paper"])
        self._write_picture(out, chart.key, chart.svg, opts)
        (out / f"{chart.key}.csv").write_text(chart.csv())
        (out / f"{chart.key}.json").write_text(chart.json())
        html = render_to_string(
            "dashboard/report_rating.html",
            {
                "study": study,
                "chart": mark_safe(chart.svg),  # noqa: S308 (the SVG is built from escaped values)
                **result,
                "generated": timezone.now(),
            },
        )
        (out / "index.html").write_text(html)
        self.stdout.write(self.style.SUCCESS(f"report written to {out / 'index.html'}"))
