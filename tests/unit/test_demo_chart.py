"""The demo chart: no label is crossed by a line, and the "without the guardrail" curve says what it assumes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from guardrail.core.config import load_settings
from guardrail.tools.demo_chart import Box, crosses, layout, spend_chart_svg

START = datetime(2026, 11, 23, 2, 41, tzinfo=UTC)


@dataclass
class P:
    at: datetime
    spend: Decimal
    unguarded: Decimal


def incident(minutes_between_events: float, final_unguarded: int) -> tuple[list[P], list[tuple[datetime, str]]]:
    """The demo's shape: a loop from 02:42, the guardrail flattening spend at $26, the unguarded curve running on."""
    points = []
    for tick in range(59):
        at = START + timedelta(seconds=30 * tick + 42)
        loop = max(0, tick - 4)
        unguarded = Decimal(final_unguarded) * loop / 54
        points.append(P(at, min(unguarded, Decimal("26.3")) + Decimal("0.03") * tick, unguarded))
    gap = timedelta(minutes=minutes_between_events)
    alert = START + timedelta(minutes=4)
    reset = START + timedelta(minutes=23)
    return points, [(alert, "alert"), (alert + gap, "throttle"), (alert + 7 * gap, "shutdown"), (reset, "reset")]


@pytest.mark.parametrize(("gap", "final"), [(1, 210), (0.5, 210), (2, 120), (1, 30), (0.25, 400)])
def test_no_label_is_crossed_by_a_line(gap: float, final: int) -> None:
    points, events = incident(gap, final)
    chart = layout(points, events, load_settings().budget_list()[0])
    assert len(chart.labels) == 3 + 2 + len(events)  # thresholds, the two curves, the escalations
    for label in chart.labels:
        crossed = [s for s in chart.lines() if crosses(label.box, s)]
        assert not crossed, (label.lines, crossed)
        others = [o for o in chart.labels if o is not label and o.box.overlaps(label.box)]
        assert not others, (label.lines, [o.lines for o in others])


def test_crossing_geometry() -> None:
    box = Box(10, 10, 20, 20)
    assert crosses(box, (0, 15, 30, 15)) and crosses(box, (0, 0, 30, 30)) and crosses(box, (12, 12, 13, 13))
    assert not crosses(box, (0, 25, 30, 25)) and not crosses(box, (0, 0, 30, 5)) and not crosses(box, (21, 0, 21, 30))


def test_the_unguarded_curve_runs_on_and_says_why() -> None:
    points, events = incident(1, 210)
    svg = spend_chart_svg(points, events, load_settings().budget_list()[0])
    assert "without the guardrail" in svg and "$210.00" in svg and "(loop never fixed)" in svg
    assert "nobody is alerted, so the loop is never fixed" in svg
