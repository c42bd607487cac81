"""Every figure of the paper in one registry, whichever app owns its rows.

A figure (`Figure`) is registered once, by the app whose rows it draws (in its AppConfig.ready):
its key (the export's file name), the paper's number, what it shows, what it is drawn for (a
study, a rating study, an ablation, the whole site) and where it is shown. Drawn for one subject,
it gives a `Chart`: the SVG, the table under it with named columns, and the notes that travel with
it. The pages, the exports (SVG, PNG, CSV, JSON) and `manage.py report` all take a figure from
here, so adding one is one `register` call, and `manage.py report --figures` lists them.

    Figure 1        people's preference, per baseline           a pairwise study   dashboard
    Figure 2        the judge's preference, per baseline        a pairwise study   dashboard
    Figure 3        answers graded Excellent / Pass / Fail      a rating study     dashboard
    Figures 5 and 6 the judge's grades by training source/size  an ablation        finetune
    Figure 7        live conversations' turns graded            the site           answering
    quality, helpfulness: every finished rating job             the site           dashboard

(Figure 4 is the paper's table of examples, not a chart.)"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypedDict

from evalsite.core.charts import stacked_bars

SUBJECTS = ("study", "rating study", "ranking study", "ablation", "site")


@dataclass(frozen=True)
class Chart:
    """One figure drawn for one subject: the picture and the numbers under it."""

    key: str
    title: str
    svg: str
    columns: tuple[str, ...]
    rows: list[dict[str, Any]]
    notes: tuple[str, ...] = ()

    def csv(self) -> str:
        """The table as CSV; each note a leading ``# note:`` line (pandas: ``comment="#"``)."""
        out = io.StringIO()
        for note in self.notes:
            out.write(f"# note: {note}\n")
        writer = csv.DictWriter(out, fieldnames=self.columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for row in self.rows:
            writer.writerow({k: _cell(row.get(k)) for k in self.columns})
        return out.getvalue()

    def as_dict(self) -> dict[str, Any]:
        return {"figure": self.key, "title": self.title, "notes": list(self.notes), "rows": self.rows}

    def json(self) -> str:
        return json.dumps(self.as_dict(), indent=2, default=str)


WIDE = 0.30  # a 95% interval wider than 30 points (fewer than about 40 answers): a rough guess


def few_votes(label: str, n: int | None, ci: tuple[float, float] | None, share: str, unit: str) -> str | None:
    """A figure's note when a bar rests on too few votes to read: its 95% interval spans more than
    WIDE. None when the interval is narrower, or when there is no vote (no bar) or no interval."""
    if not n or ci is None or ci[1] - ci[0] <= WIDE:
        return None
    return (
        f"Too few votes for {label} so far ({n} {unit}): its {share} is known only to within "
        f"{ci[0] * 100:.0f}-{ci[1] * 100:.0f}% (95% interval); more votes narrow it."
    )


def _cell(value: object) -> object:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, (list, tuple)):
        return " ".join(str(_cell(v)) for v in value)
    return value


@dataclass(frozen=True)
class Figure:
    key: str  # the export's file name: figure3.svg
    paper: str  # "Figure 3"
    shows: str  # what it shows, in one sentence
    subject: str  # what it is drawn for: one of SUBJECTS
    page: str  # where it is shown: a URL name
    # draw(subject, paper=True): the chart, or None when there is nothing to draw yet
    draw: Callable[..., Chart | None] = field(compare=False)


FIGURES: dict[str, Figure] = {}


def register(figure: Figure) -> Figure:
    if figure.subject not in SUBJECTS:
        raise ValueError(f"figure {figure.key}: subject must be one of {', '.join(SUBJECTS)}")
    FIGURES[figure.key] = figure
    return figure


def for_subject(subject: str) -> list[Figure]:
    """The figures drawn for this kind of subject, in the paper's order."""
    return [f for f in FIGURES.values() if f.subject == subject]


# --- figures of graded answers (Figures 3 and 7, the site's quality chart) ----------------------

# a row of Excellent / Pass / Fail shares: who graded (or what was graded), how many answers, the
# shares, and 95% intervals on Excellent and Fail
GradedRow = TypedDict(
    "GradedRow",
    {
        "label": str,
        "n": int,
        "excellent": float,
        "pass": float,
        "fail": float,
        "excellent_ci": "tuple[float, float] | None",
        "fail_ci": "tuple[float, float] | None",
    },
)
GRADED_COLUMNS = (
    "label",
    "n",
    "excellent",
    "pass",
    "fail",
    "excellent_low",
    "excellent_high",
    "fail_low",
    "fail_high",
)


def graded_row(label: str, shares: Mapping[str, Any]) -> GradedRow:
    """A row from stats.outcomes.label_shares(..., win="excellent", tie="pass", loss="fail")."""
    return {
        "label": label,
        "n": shares["n"],
        "excellent": shares["win"],
        "pass": shares["tie"],
        "fail": shares["loss"],
        "excellent_ci": shares["win_ci"],
        "fail_ci": shares["loss_ci"],
    }


def graded_chart(
    key: str,
    title: str,
    rows: list[GradedRow],
    paper: dict[str, tuple] | None = None,
    paper_title: str = "",
    notes: tuple[str, ...] = (),
    unit: str = "answers graded",
) -> Chart:
    """Excellent / Pass / Fail bars; a bar on too few answers to read (few_votes, ``unit`` what its
    n counts) adds its note to ``notes``."""
    few = [few_votes(r["label"], r["n"], r["excellent_ci"], "Excellent share", unit) for r in rows]
    notes = (*notes, *(note for note in few if note))
    bars = [
        {
            "baseline": r["label"],
            "n": r["n"],
            "win": r["excellent"],
            "tie": r["pass"],
            "loss": r["fail"],
            "win_ci": r["excellent_ci"],
            "loss_ci": r["fail_ci"],
        }
        for r in rows
    ]
    svg = stacked_bars(
        bars, title, "", paper=paper, legend=["Excellent", "Pass", "Fail"], paper_title=paper_title, notes=notes
    )
    table = [
        {
            **{k: r[k] for k in ("label", "n", "excellent", "pass", "fail")},  # type: ignore[literal-required]
            **_bounds("excellent", r["excellent_ci"]),
            **_bounds("fail", r["fail_ci"]),
        }
        for r in rows
    ]
    return Chart(key, title, svg, GRADED_COLUMNS, table, notes)


def _bounds(name: str, ci: tuple[float, float] | None) -> dict[str, float | None]:
    low, high = ci or (None, None)
    return {f"{name}_low": low, f"{name}_high": high}
