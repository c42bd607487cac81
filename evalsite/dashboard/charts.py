"""Figures 1 and 2 as SVG: one horizontal stacked bar per baseline (candidate wins / tie /
loses), 95% intervals on the win and loss shares, n, and the paper's bar beside when asked."""

from __future__ import annotations

from xml.sax.saxutils import escape

COLOURS = {"win": "#3f7d4e", "tie": "#b9bec8", "loss": "#b5483f"}
PAPER_COLOURS = {"win": "#9cc5a5", "tie": "#dde0e5", "loss": "#e0a39d"}


def stacked_bars(
    rows: list[dict],
    title: str,
    candidate: str,
    paper: dict[str, tuple] | None = None,
    link=None,
    legend: list[str] | None = None,
) -> str:
    """`link(baseline, outcome)` gives the drill-down address of a bar segment, if any."""
    label_w, bar_w, row_h, top = 170, 520, 46, 54
    extra = len(paper or {}) * 26 + (30 if paper else 0)
    height = top + row_h * max(1, len(rows)) + 40 + extra
    width = label_w + bar_w + 90
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'font-family="system-ui, sans-serif" font-size="13" role="img" aria-label="{escape(title)}">',
        f'<text x="0" y="18" font-size="16" font-weight="600">{escape(title)}</text>',
    ]
    names = legend or [f"{candidate} wins", "tie", f"{candidate} loses"]
    x = 0
    for key, text in zip(("win", "tie", "loss"), names, strict=True):
        out.append(
            f'<rect x="{x}" y="28" width="12" height="12" fill="{COLOURS[key]}"/>'
            f'<text x="{x + 16}" y="38">{escape(text)}</text>'
        )
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
        left = label_w
        for key, share in (("win", win), ("tie", tie), ("loss", loss)):
            w = bar_w * share
            rect = f'<rect x="{left:.1f}" y="{y:.1f}" width="{w:.1f}" height="{height_}" fill="{colours[key]}"/>'
            if link and baseline is not None:
                outcome = {"win": "candidate", "tie": "tie", "loss": "baseline"}[key]
                rect = f'<a href="{escape(link(baseline, outcome))}">{rect}</a>'
            out.append(rect)
            if labels and share >= 0.06:
                out.append(
                    f'<text x="{left + w / 2:.1f}" y="{y + height_ / 2 + 4:.1f}" text-anchor="middle" '
                    f'fill="{"#fff" if key != "tie" else "#1d2330"}">{share * 100:.0f}%</text>'
                )
            left += w

    for i, row in enumerate(rows):
        y = top + i * row_h
        out.append(f'<text x="{label_w - 8}" y="{y + 18}" text-anchor="end">{escape(row["baseline"])}</text>')
        out.append(
            f'<text x="{label_w - 8}" y="{y + 33}" text-anchor="end" fill="#5b6475" font-size="11">'
            f"n = {row['n']}</text>"
        )
        bar(y + 4, row["win"], row["tie"], row["loss"], COLOURS, 28, True, row["baseline"])
        for ci, anchor in ((row.get("win_ci"), 0.0), (row.get("loss_ci"), None)):
            if not ci:
                continue
            # the win interval sits on the win/tie border; the loss interval on the tie/loss border
            x1 = label_w + bar_w * (ci[0] if anchor is not None else 1 - ci[1])
            x2 = label_w + bar_w * (ci[1] if anchor is not None else 1 - ci[0])
            cy = y + 18
            out.append(
                f'<line x1="{x1:.1f}" y1="{cy}" x2="{x2:.1f}" y2="{cy}" stroke="#1d2330" stroke-width="1.5"/>'
                f'<line x1="{x1:.1f}" y1="{cy - 5}" x2="{x1:.1f}" y2="{cy + 5}" stroke="#1d2330" stroke-width="1.5"/>'
                f'<line x1="{x2:.1f}" y1="{cy - 5}" x2="{x2:.1f}" y2="{cy + 5}" stroke="#1d2330" stroke-width="1.5"/>'
            )
    if paper:
        y0 = top + row_h * len(rows) + 24
        out.append(f'<text x="0" y="{y0}" font-weight="600" fill="#5b6475">The paper (LIMA 65B, 300 prompts)</text>')
        for k, (name, (win, tie, loss)) in enumerate(paper.items()):
            y = y0 + 10 + k * 26
            out.append(f'<text x="{label_w - 8}" y="{y + 14}" text-anchor="end" fill="#5b6475">{escape(name)}</text>')
            bar(y, win / 100, tie / 100, loss / 100, PAPER_COLOURS, 18, False)
            out.append(
                f'<text x="{label_w + bar_w + 6}" y="{y + 14}" fill="#5b6475" font-size="11">{win}/{tie}/{loss}</text>'
            )
    out.append("</svg>")
    return "".join(out)


def means_with_intervals(rows: list[dict], title: str, low: float = 1, high: float = 6) -> str:
    """Likert means (Figures 5 and 6): a dot per row and its 95% interval."""
    label_w, plot_w, row_h, top = 200, 420, 30, 40
    height = top + row_h * max(1, len(rows)) + 30
    width = label_w + plot_w + 80

    def x(value: float) -> float:
        return label_w + plot_w * (value - low) / (high - low)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'font-family="system-ui, sans-serif" font-size="13" role="img" aria-label="{escape(title)}">',
        f'<text x="0" y="18" font-size="16" font-weight="600">{escape(title)}</text>',
    ]
    for tick in range(int(low), int(high) + 1):
        out.append(
            f'<line x1="{x(tick):.1f}" y1="{top - 6}" x2="{x(tick):.1f}" y2="{height - 24}" stroke="#e6e9f0"/>'
            f'<text x="{x(tick):.1f}" y="{height - 8}" text-anchor="middle" fill="#5b6475">{tick}</text>'
        )
    for i, row in enumerate(rows):
        y = top + i * row_h + 10
        out.append(f'<text x="{label_w - 8}" y="{y + 4}" text-anchor="end">{escape(row["label"])}</text>')
        if row.get("ci95"):
            a, b = row["ci95"]
            out.append(f'<line x1="{x(a):.1f}" y1="{y}" x2="{x(b):.1f}" y2="{y}" stroke="#1d2330" stroke-width="1.5"/>')
        if row.get("mean") is not None:
            out.append(
                f'<circle cx="{x(row["mean"]):.1f}" cy="{y}" r="5" fill="#2f5bd3"/>'
                f'<text x="{label_w + plot_w + 8}" y="{y + 4}">{row["mean"]:.2f}</text>'
            )
    out.append("</svg>")
    return "".join(out)


def line_chart(points: list[tuple[float, float]], title: str, x_label: str, y_label: str, marks=()) -> str:
    """A plain line (a training run's loss per step); ``marks`` are x positions drawn as dashed
    verticals (epoch ends)."""
    width, height, left, bottom, top = 640, 260, 56, 36, 30
    plot_w, plot_h = width - left - 16, height - top - bottom
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'font-family="system-ui, sans-serif" font-size="12" role="img" aria-label="{escape(title)}">',
        f'<text x="0" y="16" font-size="15" font-weight="600">{escape(title)}</text>',
    ]
    if not points:
        out.append(f'<text x="{left}" y="{top + 40}">no steps yet</text></svg>')
        return "".join(out)
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1 = min(xs), max(max(xs), min(xs) + 1)
    y0, y1 = min(0.0, min(ys)), max(ys) * 1.05 or 1.0

    def at(x: float, y: float) -> str:
        return f"{left + (x - x0) / (x1 - x0) * plot_w:.1f},{top + plot_h - (y - y0) / (y1 - y0) * plot_h:.1f}"

    out.append(f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="#888"/>')
    out.append(f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="#888"/>')
    for i in range(5):
        value = y0 + (y1 - y0) * i / 4
        y = top + plot_h - plot_h * i / 4
        out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{value:.2f}</text>')
    for mark in marks:
        x = left + (mark - x0) / (x1 - x0) * plot_w
        out.append(
            f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{top + plot_h}" stroke="#ccc" stroke-dasharray="3"/>'
        )
    out.append(f'<text x="{left + plot_w / 2}" y="{height - 6}" text-anchor="middle">{escape(x_label)}</text>')
    out.append(
        f'<text x="12" y="{top + plot_h / 2}" transform="rotate(-90 12 {top + plot_h / 2})" '
        f'text-anchor="middle">{escape(y_label)}</text>'
    )
    path = " ".join(at(x, y) for x, y in points)
    out.append(f'<polyline fill="none" stroke="#2f5d9e" stroke-width="2" points="{path}"/>')
    out.append("</svg>")
    return "".join(out)
