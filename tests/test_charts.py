"""The stacked bars a person reads: intervals clear of the percentage labels and of the clicks."""

import xml.etree.ElementTree as ET

from evalsite.core.charts import SVG_NS, stacked_bars

NS = {"svg": SVG_NS}


def test_interval_whiskers_stay_below_the_labels_and_let_clicks_through_to_the_bar():
    rows = [
        {
            "baseline": "alpaca-65b",
            "n": 60,
            "win": 0.5,
            "tie": 0.2,
            "loss": 0.3,
            "win_ci": (0.4, 0.6),
            "loss_ci": (0.2, 0.4),
        },
        {"baseline": "bard", "n": 60, "win": 0.3, "tie": 0.3, "loss": 0.4, "win_ci": (0.2, 0.4), "loss_ci": (0.3, 0.5)},
    ]
    root = ET.fromstring(stacked_bars(rows, "Figure 1", "lima-65b", link=lambda b, o: f"/drill/{b}/{o}"))
    labels = [t for t in root.iter(f"{{{SVG_NS}}}text") if t.text and t.text.endswith("%")]
    intervals = root.findall(".//svg:g[@class='interval']", NS)
    assert len(labels) == 6 and len(intervals) == 4
    for group in intervals:
        assert group.get("pointer-events") == "none"
        top = min(min(float(line.get("y1")), float(line.get("y2"))) for line in group.findall("svg:line", NS))
        bottom = max(max(float(line.get("y1")), float(line.get("y2"))) for line in group.findall("svg:line", NS))
        for label in labels:
            baseline = float(label.get("y"))  # text of 13 px: from about baseline - 10 to baseline + 3
            assert bottom < baseline - 10 or top > baseline + 3, "a whisker crosses a percentage label"
    for label in labels:  # a label lets clicks through to its segment's link
        assert label.get("pointer-events") == "none"


def test_every_name_fits_left_of_its_bar_and_a_very_long_one_is_cut_with_its_whole_text_kept():
    """Figure 7's paper rows ("LIMA, zero-shot (no dialogue in training)") were clipped on the left."""
    from evalsite.answering.chat import PAPER_FIGURE_7
    from evalsite.core.charts import CHAR_W

    long_name = "a-system-with-a-name-far-longer-than-any-bar-label-should-be"
    rows = [
        {"baseline": name, "n": 3, "win": 0.5, "tie": 0.2, "loss": 0.3, "win_ci": (0.1, 0.9), "loss_ci": (0.0, 0.7)}
        for name in ("lima-7b", long_name)
    ]
    root = ET.fromstring(stacked_bars(rows, "Figure 7", "", paper=PAPER_FIGURE_7, legend=["E", "P", "F"]))
    right_aligned = [t for t in root.iter(f"{{{SVG_NS}}}text") if t.get("text-anchor") == "end"]
    names = {t.text for t in right_aligned}
    assert set(PAPER_FIGURE_7) <= names and "lima-7b" in names
    for text in right_aligned:
        assert float(text.get("x")) - CHAR_W * len(text.text) >= 0, f"{text.text!r} starts left of the figure"
    [cut] = [t for t in right_aligned if t.text.endswith("\u2026")]
    assert long_name.startswith(cut.text[:-1]) and cut.find(f"{{{SVG_NS}}}title").text == long_name


def test_a_training_runs_loss_chart_labels_its_steps_on_the_x_axis():
    from evalsite.core.charts import line_chart, nice_ticks

    points = [(step, 2.5 - step / 40) for step in range(1, 31)]
    root = ET.fromstring(line_chart(points, "Loss", "optimiser step", "loss", marks=[10, 20]))
    ticks = root.findall(".//svg:g[@class='x-tick']", NS)
    labels = [t.find("svg:text", NS).text for t in ticks]
    assert labels == ["5", "10", "15", "20", "25", "30"]
    xs = [float(t.find("svg:text", NS).get("x")) for t in ticks]
    assert xs == sorted(xs) and 56 <= xs[0] and xs[-1] <= 640 - 16
    assert nice_ticks(3, 1200) == [200, 400, 600, 800, 1000, 1200] and nice_ticks(0, 1)[:3] == [0, 0.2, 0.4]
