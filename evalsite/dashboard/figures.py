"""One builder of a study's figures and tables. The dashboard page, its CSV / JSON / SVG / PNG
exports and `manage.py report` all render what `build` returns, so a number cannot differ
between them."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import IO

from django.http import HttpResponse

from evalsite.annotation.models import Study
from evalsite.core.charts import stacked_bars
from evalsite.dashboard import data
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


def _row(figure: str, annotator: str, r: dict) -> dict:
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
    result: dict
    paper: bool

    @property
    def judge(self) -> dict | None:
        return self.result["judge"]

    def table(self) -> list[dict]:
        rows = []
        for r in self.result["human"]:
            # a sampled study's votes are weighted back by their chances (evidence.people_weighted)
            rows.append(_row("1 (human)", WEIGHTED if r.get("weighted") else "people", r))
            if r.get("assisted"):
                rows.append(_row("1 (human)", ASSISTED, {"baseline": r["baseline"], **r["assisted"]}))
        if self.judge:
            rows += [_row("2 (judge)", self.judge["label"], r) for r in self.judge["figure"]]
        return rows

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
            )
        }
        if self.judge:
            figures["figure2"] = stacked_bars(
                self.judge["figure"],
                f"Figure 2: {self.judge['label']} as the annotator",
                candidate,
                data.PAPER["gpt4"] if self.paper else None,
                link=judge_link,
            )
        return figures

    def write_csv(self, handle: IO[str] | HttpResponse) -> None:
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
    return StudyFigures(study, rule, data.dashboard(study, rule, job, details=details), paper)
