"""One builder of a study's figures and tables. The dashboard page, its CSV / JSON / SVG / PNG
exports and `manage.py report` all render what `build` returns, so a number cannot differ
between them. The figures the dashboard owns are registered in core.figures at the end: Figures
1 and 2 of a pairwise study, Figure 3 of a rating study, and the site's charts of every finished
rating job."""

from __future__ import annotations

import csv
import functools
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import IO, Any

from django.http import HttpResponse

from evalsite.annotation.blinding import blinding_warnings
from evalsite.annotation.kinds import study_kind
from evalsite.annotation.models import Study
from evalsite.core.charts import means_with_intervals, stacked_bars
from evalsite.core.figures import Chart, Figure, GradedRow, few_votes, graded_chart, register
from evalsite.dashboard import data, ratings
from evalsite.dashboard.payloads import Dashboard, JudgePanel
from evalsite.judging.models import JudgeJob

# the figures' table, one row per figure and baseline, in every export
TABLE_COLUMNS = (
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
    "judge_only",  # judge-assisted rows: comparisons only the judge saw
    "judge_weight",  # judge-assisted rows: PPI++'s weight on the judge (0: people alone)
    "judge_worth",  # judge-assisted rows: people's votes the judge was worth (effective sample size - n)
)
ASSISTED = "people, judge-assisted"
WEIGHTED = "people, weighted"


def _share(value: float | None) -> float | None:
    return None if value is None else float(value)  # whole in the JSON; 4 decimals in the CSV


def _row(figure: str, annotator: str, r: Mapping[str, Any]) -> dict[str, Any]:
    win_low, win_high = r["win_ci"] or (None, None)
    loss_low, loss_high = r["loss_ci"] or (None, None)
    assisted = annotator == ASSISTED
    return {
        "figure": figure,
        "annotator": annotator,
        "baseline": r["baseline"],
        "n": r["n"],
        "votes": r.get("votes", r["n"]),
        "win": _share(r["win"]),
        "tie": _share(r["tie"]),
        "loss": _share(r["loss"]),
        "win_low": _share(win_low),
        "win_high": _share(win_high),
        "loss_low": _share(loss_low),
        "loss_high": _share(loss_high),
        "judge_only": r["judge_only"] if assisted else None,
        "judge_weight": _share(r["lam"]) if assisted else None,
        "judge_worth": r.get("worth") if assisted else None,
    }


@dataclass
class StudyFigures:
    """A study's numbers (data.dashboard) and what every view of them is made of."""

    study: Study
    rule: str
    result: Dashboard
    paper: bool
    # False: the page's first request, which leaves the blinding checks (a read of every answer)
    # to its second (data.evidence_panel); every other form carries them in Figure 1's notes
    details: bool = True

    @property
    def judge(self) -> JudgePanel | None:
        return self.result["judge"]

    def table(self) -> list[dict[str, Any]]:
        rows = []
        for r in self.result["human"]:
            # a sampled study's votes are weighted back by their chances (evidence.people_weighted)
            rows.append(_row("1 (human)", WEIGHTED if r.get("weighted") else "people", r))
            if assisted := r.get("assisted"):
                rows.append(_row("1 (human)", ASSISTED, {"baseline": r["baseline"], **assisted}))
        if self.judge:
            rows += [_row("2 (judge)", self.judge["label"], r) for r in self.judge["figure"]]
        return rows

    @functools.cached_property
    def notes(self) -> dict[str, list[str]]:
        """What a reader of each figure must know, as the page warns it, carried by every form of
        the figure (its SVG and the PNG drawn from it, the CSV's leading # lines, the JSON, the
        report): Figure 1, what could unblind the people (answers cut at the token limit, lengths);
        Figure 2, the judge's warnings (orders that disagree, position bias, unreadable verdicts);
        both, the bars resting on too few votes to read."""

        def few(rows: list) -> list[str]:  # bars too thin to read (core.figures.few_votes)
            notes = (few_votes(r["baseline"], r["n"], r.get("win_ci"), "win share", "comparisons") for r in rows)
            return [note for note in notes if note]

        judge = self.judge
        figure2 = list(judge.get("warnings") or []) + few(judge["figure"]) if judge else []
        blinding = blinding_warnings(self.study) if self.details else []
        return {"figure1": blinding + few(self.result["human"]), "figure2": figure2}

    def human_table(self) -> list[dict]:
        """Figure 1's rows: the table under it on the page and in the report."""
        return [row for row in self.table() if row["figure"] == "1 (human)"]

    def svgs(
        self, link: Callable[[str, str], str] | None = None, judge_link: Callable[[str, str], str] | None = None
    ) -> dict[str, str]:
        """Figure 1 (its segments linked with ``link``) and Figure 2 (with ``judge_link``)."""
        candidate = self.study.candidate.name
        figures = {
            "figure1": stacked_bars(
                self.result["human"],
                "Figure 1: human preference",
                candidate,
                data.PAPER["human"] if self.paper else None,
                link=link,
                notes=self.notes["figure1"],
            )
        }
        if self.judge:
            figures["figure2"] = stacked_bars(
                self.judge["figure"],
                f"Figure 2: {self.judge['label']} as the annotator",
                candidate,
                data.PAPER["gpt4"] if self.paper else None,
                link=judge_link,
                notes=self.notes["figure2"],
            )
        return figures

    def write_csv(self, handle: IO[str] | HttpResponse) -> None:
        """The figures' table, led by their notes as # lines (pandas: ``read_csv(..., comment="#")``)."""
        for key, notes in self.notes.items():
            for note in notes:
                handle.write(f"# note ({FIGURE_TITLES[key].split(':')[0]}): {note}\n")
        writer = csv.DictWriter(handle, fieldnames=TABLE_COLUMNS, lineterminator="\n")
        writer.writeheader()
        for row in self.table():
            writer.writerow({k: "" if v is None else f"{v:.4f}" if isinstance(v, float) else v for k, v in row.items()})

    def json(self) -> str:
        return json.dumps(self.payload(), indent=2, default=str)

    def payload(self) -> dict:
        """The JSON export: the table, agreement, the judge's settings and scorecard, breakdowns and
        the cross-study leaderboard."""
        out: dict = {
            "study": self.study.name,
            "rule": self.rule,
            "figures": self.table(),
            "notes": self.notes,
            "person_person": self.result["person_person"],
            "judge": None,
            "breakdowns": self.result.get("breakdowns") or data.breakdowns(self.study, data.counting(self.rule)),
            "leaderboard": data.leaderboard(),
            "length_control": [
                {k: v for k, v in row.items() if k != "both"} for row in self.result["evidence"]["length_control"]
            ],
            "calibration": self.result["evidence"]["calibration"],
        }
        if self.judge:
            j = self.judge
            out["judge"] = {
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
        return out


RULES = ("majority", "all", "reliability")


def build(
    study: Study, rule: str = "majority", job: JudgeJob | None = None, paper: bool = True, details: bool = True
) -> StudyFigures:
    if rule not in RULES:
        rule = "majority"
    return StudyFigures(study, rule, data.dashboard(study, rule, job, details=details), paper, details)


# --- the registry's entries (core.figures) ----------------------------------------------------

FIGURE_TITLES = {"figure1": "Figure 1: human preference", "figure2": "Figure 2: the judge as the annotator"}


def study_chart(built: StudyFigures, key: str, **svg_links: Any) -> Chart | None:
    """Figure 1 or 2 of a built study: its SVG (segments linked as ``svg_links`` say), its rows of
    the figures' table and, for Figure 2, the judge's warnings."""
    svgs = built.svgs(**svg_links)
    if key not in svgs:
        return None
    figure = "1 (human)" if key == "figure1" else "2 (judge)"
    notes = tuple(built.notes[key])
    rows = [row for row in built.table() if row["figure"] == figure]
    return Chart(key, FIGURE_TITLES[key], svgs[key], TABLE_COLUMNS, rows, notes)


def _pairwise(key: str) -> Callable[..., Chart | None]:
    def draw(study: Study, paper: bool = True) -> Chart | None:
        if not study_kind(study).pairs:
            return None
        return study_chart(build(study, paper=paper, details=False), key)

    return draw


def figure_3_chart(study: Study, result: dict, paper: bool = True) -> Chart:
    """Figure 3 from ratings.figure_3's result: the people's grades, the judge's, the paper's."""
    return graded_chart(
        "figure3",
        f"Figure 3: {study.candidate.name}'s answers graded",
        result["rows"],
        paper={"LIMA 65B, the authors": ratings.PAPER_FIGURE_3} if paper else None,
        paper_title="The paper (50 prompts, graded by the authors)",
    )


def _figure_3(study: Study, paper: bool = True) -> Chart | None:
    if study_kind(study).figures != "rating study":
        return None
    result = ratings.figure_3(study)
    return figure_3_chart(study, result, paper) if result["rows"] else None


def _quality(ratings: list[dict] | None = None, paper: bool = True) -> Chart | None:
    """Every finished Fail / Pass / Excellent rating job of the judge, one bar each. ``ratings``:
    data.absolute_ratings() when the caller has it already (the index shows its table too)."""
    rows: list[GradedRow] = [
        {
            "label": f"{r['job'].system} ({r['job'].prompt_set})",
            "n": r["ratings"],
            **r["shares"],  # type: ignore[typeddict-item]
            "excellent_ci": None,  # a job's shares, without an interval (the job's page has its counts)
            "fail_ci": None,
        }
        for r in (data.absolute_ratings() if ratings is None else ratings)
        if r["job"].kind == "fpe"
    ]
    return graded_chart("quality", "Absolute quality (Figures 3 and 7)", rows) if rows else None


def _helpfulness(ratings: list[dict] | None = None, paper: bool = True) -> Chart | None:
    """Every finished Likert rating job: its mean helpfulness and 95% interval (``ratings`` as
    _quality's)."""
    rows = [
        {"label": f"{r['job'].system} ({r['job'].prompt_set})", "n": r["ratings"], "mean": r["mean"], "ci95": r["ci95"]}
        for r in (data.absolute_ratings() if ratings is None else ratings)
        if r["job"].kind == "likert" and r.get("mean") is not None
    ]
    if not rows:
        return None
    title = "Helpfulness 1-6, mean and 95% CI (Figures 5 and 6)"
    table = [{**{k: r[k] for k in ("label", "n", "mean")}, "low": r["ci95"][0], "high": r["ci95"][1]} for r in rows]
    return Chart("helpfulness", title, means_with_intervals(rows, title), ("label", "n", "mean", "low", "high"), table)


for entry in (
    Figure(
        "figure1",
        "Figure 1",
        "people's preference for the candidate over each baseline",
        "study",
        "dashboard:study",
        _pairwise("figure1"),
    ),
    Figure(
        "figure2",
        "Figure 2",
        "the judge's preference, both orders counted",
        "study",
        "dashboard:study",
        _pairwise("figure2"),
    ),
    Figure(
        "figure3",
        "Figure 3",
        "the candidate's answers graded Excellent / Pass / Fail, by people and the judge",
        "rating study",
        "dashboard:study",
        _figure_3,
    ),
    Figure(
        "quality", "Figures 3 and 7", "every finished Excellent / Pass / Fail job", "site", "dashboard:index", _quality
    ),
    Figure(
        "helpfulness",
        "Figures 5 and 6",
        "every finished helpfulness (1-6) job",
        "site",
        "dashboard:index",
        _helpfulness,
    ),
):
    register(entry)
