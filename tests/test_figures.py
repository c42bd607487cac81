"""The figure registry (evalsite/core/figures.py): every chart of the paper is one entry, found by
its key whichever app owns its rows, with a page that exists; a chart's CSV carries its notes."""

from __future__ import annotations

import csv
import io

from django.urls import reverse

from evalsite.core.figures import FIGURES, SUBJECTS, Chart

ARGS = {"study": ["some-study"], "rating study": ["some-study"], "ablation": ["some-ablation"], "site": []}


def test_every_chart_of_the_paper_is_registered_once_with_a_page_that_exists():
    assert {"figure1", "figure2", "figure3", "figure5", "figure6", "figure7"} <= set(FIGURES)
    for key, figure in FIGURES.items():
        assert figure.key == key and figure.subject in SUBJECTS
        assert reverse(figure.page, args=ARGS[figure.subject]).startswith("/")  # NoReverseMatch otherwise
    papers = [f.paper for f in FIGURES.values() if f.paper.startswith("Figure ")]
    assert len(papers) == len(set(papers)), "one entry per figure of the paper"


def test_a_charts_csv_leads_with_its_notes_and_reads_back():
    chart = Chart(
        "figure9",
        "A figure",
        "<svg/>",
        ("label", "n", "share", "low"),
        [{"label": "people", "n": 3, "share": 2 / 3, "low": None, "ignored": "x"}],
        notes=("Few votes: read with care.",),
    )
    text = chart.csv()
    assert text.splitlines()[0] == "# note: Few votes: read with care."
    rows = list(csv.DictReader(line for line in io.StringIO(text) if not line.startswith("#")))
    assert rows == [{"label": "people", "n": "3", "share": "0.6667", "low": ""}]
    assert chart.as_dict()["notes"] == ["Few votes: read with care."]
