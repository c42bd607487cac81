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
