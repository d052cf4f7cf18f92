"""The demo's spend chart: spend over time with and without the guardrail, thresholds and escalations, as SVG.

Labels are placed so that no line crosses them: threshold and curve labels sit in the right margin, pushed
apart where they would overlap (a short connector keeps each at its line); each escalation label takes the
first spot beside the top of its marker, from the top down, that no curve, threshold, marker or other label
touches, and its marker runs from there to the time axis (so escalations a minute apart stack their labels).
`layout` returns the geometry so a test can check exactly that; `render` turns it into SVG.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from itertools import pairwise
from typing import Any, Protocol

from guardrail.core.models import Level, usd

EVENT_COLOURS = {"alert": "#d97706", "throttle": "#7c3aed", "shutdown": "#dc2626", "reset": "#059669"}
GUARDED, UNGUARDED = "#2563eb", "#6b7280"
WIDTH, HEIGHT = 960, 500
LEFT, RIGHT, TOP, BOTTOM = 70, 180, 66, 60
LINE_HEIGHT = 14


class ChartPoint(Protocol):
    at: datetime
    spend: Decimal  # the ledger's spend so far (with the guardrail)
    unguarded: Decimal  # the same calls with no guardrail


Segment = tuple[float, float, float, float]  # x1, y1, x2, y2


@dataclass(frozen=True)
class Box:
    x0: float
    y0: float
    x1: float
    y1: float

    def overlaps(self, other: Box) -> bool:
        return self.x0 < other.x1 and other.x0 < self.x1 and self.y0 < other.y1 and other.y0 < self.y1


@dataclass(frozen=True)
class Label:
    lines: tuple[str, ...]
    x: float  # text anchor (start)
    y: float  # baseline of the first line
    colour: str
    bold: bool = False

    @property
    def box(self) -> Box:
        width = max(len(line) for line in self.lines) * (7.6 if self.bold else 7.0)
        return Box(self.x - 2, self.y - 11, self.x + width + 2, self.y + 3 + LINE_HEIGHT * (len(self.lines) - 1))


@dataclass
class Chart:
    curves: dict[str, list[tuple[float, float]]] = field(default_factory=dict)  # colour -> polyline
    thresholds: list[tuple[str, float]] = field(default_factory=list)  # level -> y
    markers: list[tuple[str, float, float]] = field(default_factory=list)  # event, x, top y
    labels: list[Label] = field(default_factory=list)
    connectors: list[tuple[Segment, str]] = field(default_factory=list)
    x_ticks: list[tuple[float, str]] = field(default_factory=list)
    y_ticks: list[tuple[float, str]] = field(default_factory=list)

    def lines(self) -> list[Segment]:
        """Every line drawn over the plot (not the background grid): what no label may cross."""
        out: list[Segment] = []
        for polyline in self.curves.values():
            out += [(*a, *b) for a, b in pairwise(polyline)]
        out += [(LEFT, y, WIDTH - RIGHT, y) for _, y in self.thresholds]
        out += [(x, top, x, HEIGHT - BOTTOM) for _, x, top in self.markers]
        return out + [segment for segment, _ in self.connectors]


def crosses(box: Box, s: Segment) -> bool:
    """Whether the segment touches the box (inside it or through one of its edges)."""
    x1, y1, x2, y2 = s
    if max(x1, x2) < box.x0 or min(x1, x2) > box.x1 or max(y1, y2) < box.y0 or min(y1, y2) > box.y1:
        return False
    if any(box.x0 <= x <= box.x1 and box.y0 <= y <= box.y1 for x, y in ((x1, y1), (x2, y2))):
        return True
    corners = [(box.x0, box.y0), (box.x1, box.y0), (box.x1, box.y1), (box.x0, box.y1)]
    return any(_intersect(s, (*corners[i], *corners[(i + 1) % 4])) for i in range(4))


def _intersect(a: Segment, b: Segment) -> bool:
    def side(ax: float, ay: float, bx: float, by: float, cx: float, cy: float) -> float:
        return (bx - ax) * (cy - ay) - (by - ay) * (cx - ax)

    d1, d2 = side(*b[:2], *b[2:], *a[:2]), side(*b[:2], *b[2:], *a[2:])
    d3, d4 = side(*a[:2], *a[2:], *b[:2]), side(*a[:2], *a[2:], *b[2:])
    return d1 * d2 <= 0 and d3 * d4 <= 0


def layout(points: Sequence[ChartPoint], events: list[tuple[datetime, str]], budget: Any) -> Chart:
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    t0, t1 = points[0].at, points[-1].at
    span = max(1.0, (t1 - t0).total_seconds())
    levels = ("alert", "throttle", "shutdown")
    thresholds = {lvl: budget.thresholds.for_level(Level.parse(lvl)) for lvl in levels} if budget else {}
    top_value = max([*(float(p.unguarded) for p in points), *(float(v) for v in thresholds.values()), 1.0])
    step = next(s for s in (5, 10, 20, 50, 100, 200, 500, 1000) if top_value / s <= 12 or s == 1000)
    y_max = (int(top_value / step) + 1) * step

    def x(at: datetime) -> float:
        return LEFT + plot_w * (at - t0).total_seconds() / span

    def y(value: Decimal | float) -> float:
        return TOP + plot_h * (1 - float(value) / y_max)

    chart = Chart()
    chart.y_ticks = [(y(d), f"${d}") for d in range(0, y_max + 1, step)]
    minute = t0.replace(second=0, microsecond=0)
    while minute <= t1:
        if minute >= t0 and minute.minute % 5 == 0:
            chart.x_ticks.append((x(minute), f"{minute:%H:%M}"))
        minute += timedelta(minutes=1)
    chart.curves[UNGUARDED] = [(x(p.at), y(p.unguarded)) for p in points]
    chart.curves[GUARDED] = [(x(p.at), y(p.spend)) for p in points]
    chart.thresholds = [(name, y(value)) for name, value in thresholds.items()]

    last = points[-1]
    margin: list[tuple[float, tuple[str, ...], str]] = [
        (y(v), (f"{name} ${v}",), EVENT_COLOURS[name]) for name, v in thresholds.items()
    ]
    margin.append((y(last.spend), ("with the guardrail", usd(last.spend)), GUARDED))
    margin.append((y(last.unguarded), ("without the guardrail", usd(last.unguarded), "(loop never fixed)"), UNGUARDED))
    _place_margin_labels(chart, margin)
    for at, name in events:
        _place_event(chart, name, f"{name} {at:%H:%M}", x(at))
    return chart


def _place_margin_labels(chart: Chart, wanted: list[tuple[float, tuple[str, ...], str]]) -> None:
    """Right of the plot, each centred on its line where it can be, pushed apart where two would overlap."""
    edge, text_x = WIDTH - RIGHT, WIDTH - RIGHT + 16
    placed: list[tuple[float, float, tuple[str, ...], str]] = []  # top, line y, lines, colour
    for line_y, lines, colour in sorted(wanted):
        height = LINE_HEIGHT * len(lines)
        top = max(line_y - height / 2, TOP)
        if placed:
            prev_top, _, prev_lines, _ = placed[-1]
            top = max(top, prev_top + LINE_HEIGHT * len(prev_lines) + 4)
        placed.append((top, line_y, lines, colour))
    floor = float(HEIGHT - BOTTOM)  # then up from the bottom, only as far as the labels below need
    for i in reversed(range(len(placed))):
        top, line_y, lines, colour = placed[i]
        top = min(top, floor - LINE_HEIGHT * len(lines))
        placed[i] = (top, line_y, lines, colour)
        floor = top - 4
    for top, line_y, lines, colour in placed:
        label = Label(lines, text_x, top + 11, colour)
        chart.labels.append(label)
        centre = (label.box.y0 + label.box.y1) / 2
        chart.connectors.append(((edge, line_y, text_x - 4, centre), colour))


def _place_event(chart: Chart, name: str, text: str, marker_x: float) -> None:
    """The first free spot beside the marker, from the top down (right of it, else left of it), where neither
    the label nor the marker below it touches anything already drawn."""
    colour = EVENT_COLOURS.get(name, "#555555")
    plot = Box(LEFT + 2, TOP + 2, WIDTH - RIGHT - 2, HEIGHT - BOTTOM - 2)
    width = len(text) * 7.6
    lines = chart.lines()
    for baseline in range(TOP + 16, HEIGHT - BOTTOM - 4, 4):
        for start in (marker_x + 5, marker_x - 5 - width - 4):
            label = Label((text,), start, baseline, colour, bold=True)
            box = label.box
            marker: Segment = (marker_x, box.y0, marker_x, HEIGHT - BOTTOM)
            inside = plot.x0 <= box.x0 and box.x1 <= plot.x1 and plot.y0 <= box.y0 and box.y1 <= plot.y1
            if (
                inside
                and not any(crosses(box, s) for s in lines)
                and not any(box.overlaps(o.box) or crosses(o.box, marker) for o in chart.labels)
            ):
                chart.labels.append(label)
                chart.markers.append((name, marker_x, box.y0))
                return
    chart.markers.append((name, marker_x, TOP))  # pragma: no cover - no room at all: the marker alone


def render(chart: Chart, title: str, subtitle: str) -> str:
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="Helvetica, Arial, sans-serif" font-size="12">',
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="#ffffff"/>',
        f'<text x="{LEFT}" y="26" font-size="16" font-weight="bold">{html.escape(title)}</text>',
        f'<text x="{LEFT}" y="46" fill="#4b5563">{html.escape(subtitle)}</text>',
    ]
    for y, text in chart.y_ticks:
        parts.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{LEFT + plot_w}" y2="{y:.1f}" stroke="#eeeeee"/>')
        parts.append(f'<text x="{LEFT - 8}" y="{y + 4:.1f}" text-anchor="end">{text}</text>')
    bottom = TOP + plot_h
    for x, text in chart.x_ticks:
        parts.append(f'<line x1="{x:.1f}" y1="{bottom}" x2="{x:.1f}" y2="{bottom + 5}" stroke="#333333"/>')
        parts.append(f'<text x="{x:.1f}" y="{bottom + 20}" text-anchor="middle">{text}</text>')
    parts.append(f'<text x="{LEFT + plot_w / 2}" y="{HEIGHT - 15}" text-anchor="middle">time (UTC, simulated)</text>')
    for name, y in chart.thresholds:
        parts.append(
            f'<line x1="{LEFT}" y1="{y:.1f}" x2="{LEFT + plot_w}" y2="{y:.1f}" '
            f'stroke="{EVENT_COLOURS[name]}" stroke-dasharray="6 4"/>'
        )
    for name, x, marker_top in chart.markers:
        parts.append(
            f'<line x1="{x:.1f}" y1="{marker_top:.1f}" x2="{x:.1f}" y2="{bottom}" '
            f'stroke="{EVENT_COLOURS.get(name, "#555555")}" stroke-width="1.5" opacity="0.7"/>'
        )
    for colour, polyline in chart.curves.items():
        d = " ".join(f"{'M' if i == 0 else 'L'}{x:.1f},{y:.1f}" for i, (x, y) in enumerate(polyline))
        style = 'stroke-width="2" stroke-dasharray="4 3"' if colour == UNGUARDED else 'stroke-width="3"'
        parts.append(f'<path d="{d}" fill="none" stroke="{colour}" {style}/>')
    for (x1, y1, x2, y2), colour in chart.connectors:
        parts.append(f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="{colour}"/>')
    for label in chart.labels:
        weight = ' font-weight="bold"' if label.bold else ""
        spans = "".join(
            f'<tspan x="{label.x:.1f}" dy="{0 if i == 0 else LINE_HEIGHT}">{html.escape(line)}</tspan>'
            for i, line in enumerate(label.lines)
        )
        parts.append(f'<text x="{label.x:.1f}" y="{label.y:.1f}" fill="{label.colour}"{weight}>{spans}</text>')
    parts.append(f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#333333"/>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def spend_chart_svg(points: Sequence[ChartPoint], events: list[tuple[datetime, str]], budget: Any) -> str:
    """Spend over time (with and without the guardrail), thresholds and escalations, as a standalone SVG."""
    return render(
        layout(points, events, budget),
        "Bedrock spend today (global budget): a runaway agent loop, with and without the guardrail",
        "Without the guardrail nobody is alerted, so the loop is never fixed: the grey curve runs on at its rate.",
    )
