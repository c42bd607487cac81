"""Figures 1 and 2 as SVG: one horizontal stacked bar per baseline (candidate wins / tie /
loses), 95% intervals on the win and loss shares, n, and the paper's bar beside when asked.

Built as an XML tree (xml.etree), never by pasting strings: every name a user chose (a system,
a judge's model, a study) lands in an attribute or a text node that the serializer escapes, so no
name can close an attribute and open a script."""

from __future__ import annotations

import math
import textwrap
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from typing import Any

NOTE_CHARS = 118  # a caption line's characters at 11 px across a bar figure's 780 px
COLOURS = {"win": "#3f7d4e", "tie": "#b9bec8", "loss": "#b5483f"}
PAPER_COLOURS = {"win": "#9cc5a5", "tie": "#dde0e5", "loss": "#e0a39d"}
SVG_NS = "http://www.w3.org/2000/svg"
CHAR_W = 7  # a 13 px label's mean character width, as the legend spaces its entries
LABEL_MAX_CHARS = 46  # a bar's label longer than this is cut (its full text in the element's title)
INTERVAL_Y = 29  # a row's interval whiskers (26-32) from the row's top: the bar spans 4-32, its labels ~12-25


def _value(value: object) -> str:
    return f"{value:.1f}" if isinstance(value, float) else str(value)


def add(parent: ET.Element, tag: str, text: str | None = None, **attrs: object) -> ET.Element:
    """A child element; attribute names use _ for - (font_size -> font-size)."""
    element = ET.SubElement(parent, tag, {k.rstrip("_").replace("_", "-"): _value(v) for k, v in attrs.items()})
    if text is not None:
        element.text = text
    return element


def label(parent: ET.Element, text: str, **attrs: object) -> ET.Element:
    """A bar's name, cut with an ellipsis past LABEL_MAX_CHARS; a reader hovering it sees it whole."""
    if len(text) <= LABEL_MAX_CHARS:
        return add(parent, "text", text, **attrs)
    element = add(parent, "text", text[: LABEL_MAX_CHARS - 1] + "\u2026", **attrs)
    add(element, "title", text)
    return element


def label_width(names: Sequence[str], least: int = 170) -> int:
    """Room on the left for the longest name (right-aligned against its bar), so none is clipped."""
    longest = max((min(len(n), LABEL_MAX_CHARS) for n in names), default=0)
    return max(least, CHAR_W * longest + 16)


def svg(width: int, height: int, title: str, font_size: int = 13) -> ET.Element:
    root = ET.Element(
        "svg",
        {
            "xmlns": SVG_NS,
            "viewBox": f"0 0 {width} {height}",
            "width": str(width),
            "height": str(height),
            "font-family": "system-ui, sans-serif",
            "font-size": str(font_size),
            "role": "img",
            "aria-label": title,
        },
    )
    return root


def render(root: ET.Element) -> str:
    return ET.tostring(root, encoding="unicode", short_empty_elements=True)


def stacked_bars(
    rows: Sequence[Mapping[str, Any]],
    title: str,
    candidate: str,
    paper: dict[str, tuple] | None = None,
    link=None,
    legend: list[str] | None = None,
    paper_title: str = "The paper (LIMA 65B, 300 prompts)",
    notes: Sequence[str] = (),
) -> str:
    """`link(baseline, outcome)` gives the drill-down address of a bar segment, if any. ``notes``
    (what a reader must know, as the page warns it) are drawn under the figure, so that every copy
    of it (the SVG, the PNG drawn from it, the report) carries them."""
    label_w = label_width([str(r["baseline"]) for r in rows] + list(paper or {}))
    bar_w, top = 520, 54
    row_h = 58 if any(r.get("assisted") for r in rows) else 46
    extra = len(paper or {}) * 26 + (30 if paper else 0)
    caption = [line for note in notes for line in textwrap.wrap(note, NOTE_CHARS)]
    height = top + row_h * max(1, len(rows)) + 40 + extra + (24 + 15 * len(caption) if caption else 0)
    width = label_w + bar_w + 90
    root = svg(width, height, title)
    add(root, "text", title, x=0, y=18, font_size=16, font_weight=600)
    names = legend or [f"{candidate} wins", "tie", f"{candidate} loses"]
    x = 0
    for key, text in zip(("win", "tie", "loss"), names, strict=True):
        add(root, "rect", x=x, y=28, width=12, height=12, fill=COLOURS[key])
        add(root, "text", text, x=x + 16, y=38)
        x += 22 + 7 * len(text)

    def bar(
        y: float,
        win: float,
        tie: float,
        loss: float,
        colours: dict,
        height_: float,
        labels: bool,
        baseline: str | None = None,
    ) -> None:
        left = float(label_w)
        for key, share in (("win", win), ("tie", tie), ("loss", loss)):
            w = bar_w * share
            parent = root
            if link and baseline is not None:
                outcome = {"win": "candidate", "tie": "tie", "loss": "baseline"}[key]
                parent = add(root, "a", href=link(baseline, outcome))
            add(parent, "rect", x=left, y=float(y), width=float(w), height=height_, fill=colours[key])
            if labels and share >= 0.06:
                add(
                    parent,
                    "text",
                    f"{share * 100:.0f}%",
                    x=left + w / 2,
                    y=y + height_ / 2 + 4.0,
                    text_anchor="middle",
                    fill="#fff" if key != "tie" else "#1d2330",
                    pointer_events="none",
                )
            left += w

    for i, row in enumerate(rows):
        y = top + i * row_h
        label(root, str(row["baseline"]), x=label_w - 8, y=y + 18, text_anchor="end")
        add(root, "text", f"n = {row['n']}", x=label_w - 8, y=y + 33, text_anchor="end", fill="#5b6475", font_size=11)
        bar(y + 4, row["win"], row["tie"], row["loss"], COLOURS, 28, True, row["baseline"])
        assisted = row.get("assisted")
        if assisted:  # the people's shares estimated with the judge's help, under the people's own
            side = f"judge-assisted, +{assisted['judge_only']}"
            add(root, "text", side, x=label_w - 8, y=y + 45, text_anchor="end", fill="#5b6475", font_size=10)
            bar(y + 36, assisted["win"], assisted["tie"], assisted["loss"], PAPER_COLOURS, 10, False)
            low, high = assisted["win_ci"]
            add(
                root,
                "text",
                f"{assisted['win'] * 100:.0f}% [{low * 100:.0f}-{high * 100:.0f}]",
                x=label_w + bar_w + 6,
                y=y + 45,
                fill="#5b6475",
                font_size=10,
            )
        for ci, anchor in ((row.get("win_ci"), 0.0), (row.get("loss_ci"), None)):
            if not ci:
                continue
            # the win interval sits on the win/tie border; the loss interval on the tie/loss border;
            # in the bar's bottom strip, below its percentage labels (whose text ends at y + 22 +
            # descenders), and letting clicks through to the bar
            x1 = label_w + bar_w * (ci[0] if anchor is not None else 1 - ci[1])
            x2 = label_w + bar_w * (ci[1] if anchor is not None else 1 - ci[0])
            cy = y + INTERVAL_Y
            group = add(root, "g", stroke="#1d2330", stroke_width=1.5, pointer_events="none", class_="interval")
            add(group, "line", x1=float(x1), y1=cy, x2=float(x2), y2=cy)
            add(group, "line", x1=float(x1), y1=cy - 3, x2=float(x1), y2=cy + 3)
            add(group, "line", x1=float(x2), y1=cy - 3, x2=float(x2), y2=cy + 3)
    if paper:
        y0 = top + row_h * len(rows) + 24
        add(root, "text", paper_title, x=0, y=y0, font_weight=600, fill="#5b6475")
        for k, (name, (win, tie, loss)) in enumerate(paper.items()):
            y = y0 + 10 + k * 26
            label(root, name, x=label_w - 8, y=y + 14, text_anchor="end", fill="#5b6475")
            bar(y, win / 100, tie / 100, loss / 100, PAPER_COLOURS, 18, False)
            add(root, "text", f"{win}/{tie}/{loss}", x=label_w + bar_w + 6, y=y + 14, fill="#5b6475", font_size=11)
    if caption:
        y0 = top + row_h * max(1, len(rows)) + 34 + extra
        group = add(root, "g", class_="notes", fill="#b3261e", font_size=11)
        add(group, "text", "Read with care:", x=0, y=y0, font_weight=600)
        for k, line in enumerate(caption, start=1):
            add(group, "text", line, x=0, y=y0 + 15 * k)
    return render(root)


def means_with_intervals(rows: list[dict], title: str, low: float = 1, high: float = 6) -> str:
    """Likert means (Figures 5 and 6): a dot per row and its 95% interval."""
    label_w = label_width([str(r["label"]) for r in rows], least=200)
    plot_w, row_h, top = 420, 30, 40
    height = top + row_h * max(1, len(rows)) + 30
    width = label_w + plot_w + 80

    def x(value: float) -> float:
        return label_w + plot_w * (value - low) / (high - low)

    root = svg(width, height, title)
    add(root, "text", title, x=0, y=18, font_size=16, font_weight=600)
    for tick in range(int(low), int(high) + 1):
        add(root, "line", x1=x(tick), y1=top - 6, x2=x(tick), y2=height - 24, stroke="#e6e9f0")
        add(root, "text", str(tick), x=x(tick), y=height - 8, text_anchor="middle", fill="#5b6475")
    for i, row in enumerate(rows):
        y = top + i * row_h + 10
        label(root, str(row["label"]), x=label_w - 8, y=y + 4, text_anchor="end")
        if row.get("ci95"):
            a, b = row["ci95"]
            add(root, "line", x1=x(a), y1=y, x2=x(b), y2=y, stroke="#1d2330", stroke_width=1.5)
        if row.get("mean") is not None:
            add(root, "circle", cx=x(row["mean"]), cy=y, r=5, fill="#2f5bd3")
            add(root, "text", f"{row['mean']:.2f}", x=label_w + plot_w + 8, y=y + 4)
    return render(root)


def _axes(
    root: ET.Element,
    left: float,
    top: float,
    plot_w: float,
    plot_h: float,
    height: float,
    y_range: tuple[float, float],
    x_label: str,
    y_label: str,
    tick=lambda value: f"{value:.2f}",
) -> None:
    """Both axes of a plot, five labelled ticks on y across ``y_range``, and the axes' names."""
    y0, y1 = y_range
    add(root, "line", x1=left, y1=top + plot_h, x2=left + plot_w, y2=top + plot_h, stroke="#888")
    add(root, "line", x1=left, y1=top, x2=left, y2=top + plot_h, stroke="#888")
    for i in range(5):
        value = y0 + (y1 - y0) * i / 4
        add(root, "text", tick(value), x=left - 6, y=top + plot_h - plot_h * i / 4 + 4, text_anchor="end")
    add(root, "text", x_label, x=left + plot_w / 2, y=height - 6, text_anchor="middle")
    middle = top + plot_h / 2
    add(root, "text", y_label, x=12, y=middle, transform=f"rotate(-90 12 {middle})", text_anchor="middle")


def line_chart(
    points: list[tuple[float, float]],
    title: str,
    x_label: str,
    y_label: str,
    marks=(),
    second: tuple[str, list[tuple[float, float]]] | None = None,
    first_label: str = "",
) -> str:
    """A plain line (a training run's loss per step); ``marks`` are x positions drawn as dashed
    verticals (epoch ends); ``second`` is (label, points): a second series with dots (the held-out
    loss per epoch), named with ``first_label`` in a legend."""
    width, height, left, bottom, top = 640, 260, 56, 36, 30
    plot_w, plot_h = width - left - 16, height - top - bottom
    root = svg(width, height, title, font_size=12)
    add(root, "text", title, x=0, y=16, font_size=15, font_weight=600)
    if not points:
        add(root, "text", "no steps yet", x=left, y=top + 40)
        return render(root)
    extra = second[1] if second else []
    xs, ys = [p[0] for p in points + extra], [p[1] for p in points + extra]
    x0, x1 = min(xs), max(max(xs), min(xs) + 1)
    y0, y1 = min(0.0, min(ys)), max(ys) * 1.05 or 1.0

    def xy(x: float, y: float) -> tuple[float, float]:
        return left + (x - x0) / (x1 - x0) * plot_w, top + plot_h - (y - y0) / (y1 - y0) * plot_h

    def at(x: float, y: float) -> str:
        return "{:.1f},{:.1f}".format(*xy(x, y))

    _axes(root, left, top, plot_w, plot_h, height, (y0, y1), x_label, y_label)
    for value in nice_ticks(x0, x1):  # the x axis's labelled ticks (optimiser steps)
        x, _ = xy(value, y0)
        group = add(root, "g", class_="x-tick")
        add(group, "line", x1=x, y1=top + plot_h, x2=x, y2=top + plot_h + 4, stroke="#888")
        add(group, "text", _short(value), x=x, y=top + plot_h + 15, text_anchor="middle")
    for mark in marks:
        x = left + (mark - x0) / (x1 - x0) * plot_w
        add(root, "line", x1=float(x), y1=top, x2=float(x), y2=top + plot_h, stroke="#ccc", stroke_dasharray=3)
    add(root, "polyline", fill="none", stroke="#2f5d9e", stroke_width=2, points=" ".join(at(x, y) for x, y in points))
    if second:
        label, dots = second
        group = add(root, "g", class_="second-series")
        add(
            group, "polyline", fill="none", stroke="#c06a1b", stroke_width=2, points=" ".join(at(x, y) for x, y in dots)
        )
        for x, y in dots:
            cx, cy = xy(x, y)
            add(group, "circle", cx=cx, cy=cy, r=4, fill="#c06a1b")
        legend_x, legend_y = left + plot_w - 330, top + 12
        add(root, "line", x1=legend_x, y1=legend_y, x2=legend_x + 18, y2=legend_y, stroke="#2f5d9e", stroke_width=2)
        add(root, "text", first_label or y_label, x=legend_x + 22, y=legend_y + 4)
        add(root, "circle", cx=legend_x + 175, cy=legend_y, r=4, fill="#c06a1b")
        add(root, "text", label, x=legend_x + 183, y=legend_y + 4)
    return render(root)


def nice_ticks(low: float, high: float, most: int = 6) -> list[float]:
    """Round values between ``low`` and ``high`` (a step of 1, 2 or 5 times a power of ten), at
    most ``most`` of them: where an axis's labelled ticks go."""
    if high <= low:
        return [low]
    power = 10.0 ** math.floor(math.log10((high - low) / most))
    for step in (m * power for m in (1, 2, 5, 10, 20, 50)):
        first = math.ceil(low / step - 1e-9) * step
        count = int((high - first) / step + 1e-9) + 1
        if count <= most:
            digits = max(0, -math.floor(math.log10(step)))
            return [round(first + k * step, digits) for k in range(count)]
    return [low, high]


def _short(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")


def curve_chart(
    points: list[dict], title: str, x_label: str, y_label: str, y_range: tuple[float, float], log_x: bool = False
) -> str:
    """Points with 95% whiskers (an ablation's cells): each point is {label, x, y, low, high}
    (y None: not measured yet, drawn as a hollow mark on the axis). With ``log_x`` the x axis is
    log2 (the paper's Figure 6 doubles the examples per point); without, the points are evenly
    spaced categories (Figure 5's sources)."""
    width, height, left, bottom, top = 640, 280, 56, 48, 30
    plot_w, plot_h = width - left - 30, height - top - bottom
    root = svg(width, height, title, font_size=12)
    add(root, "text", title, x=0, y=16, font_size=15, font_weight=600)
    y0, y1 = y_range
    xs = [math.log2(p["x"]) if log_x else float(n) for n, p in enumerate(points)]
    x0, x1 = (min(xs), max(xs)) if xs else (0.0, 1.0)
    pad = (x1 - x0) * 0.08 or 0.5

    def px(x: float) -> float:
        return left + (x - x0 + pad) / (x1 - x0 + 2 * pad) * plot_w

    def py(y: float) -> float:
        return top + plot_h - (min(max(y, y0), y1) - y0) / (y1 - y0) * plot_h

    _axes(root, left, top, plot_w, plot_h, height, y_range, x_label, y_label, tick=_short)
    measured = [(px(x), p) for x, p in zip(xs, points, strict=True) if p["y"] is not None]
    if log_x and len(measured) > 1:  # a line between sources would suggest an order they do not have
        add(root, "polyline", fill="none", stroke="#2f5d9e", stroke_width=2,
            points=" ".join(f"{x:.1f},{py(p['y']):.1f}" for x, p in measured))  # fmt: skip
    for x, p in zip(xs, points, strict=True):
        cx = px(x)
        group = add(root, "g", class_="point")
        add(group, "title", f"{p['label']}: " + ("not rated yet" if p["y"] is None else f"{p['y']:.2f}"))
        add(group, "text", p["label"], x=cx, y=top + plot_h + 16, text_anchor="middle")
        if p["y"] is None:
            add(group, "circle", cx=cx, cy=top + plot_h, r=5, fill="none", stroke="#888")
            continue
        if p.get("low") is not None:
            low, high = py(p["low"]), py(p["high"])
            add(group, "line", class_="whisker", x1=cx, y1=low, x2=cx, y2=high, stroke="#2f5d9e")
            for end in (low, high):
                add(group, "line", x1=cx - 5, y1=end, x2=cx + 5, y2=end, stroke="#2f5d9e")
        add(group, "circle", cx=cx, cy=py(p["y"]), r=5, fill="#2f5d9e")
        add(group, "text", f"{p['y']:.2f}", x=cx + 8, y=py(p["y"]) - 6)
    return render(root)
