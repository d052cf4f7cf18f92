"""Admission of a guarded call is pure: the caller's injected clock, not the machine's, ends a snooze."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from guardrail.client.admission import shutdown_limit
from guardrail.core.models import Budget, Flag, Level, Rearm, Thresholds

BUDGET = Budget(selector="global", window="day", thresholds=Thresholds(Decimal(5), Decimal(10), Decimal(25)))
SNOOZE_END = datetime(2026, 11, 22, 18, 0, tzinfo=UTC)


def flag_after_reset() -> Flag:
    rearm = Rearm(window_key="day#2026-11-22T00:00:00+00:00", baseline_spend=Decimal("26.30"), snooze_until=SNOOZE_END)
    return Flag(scope="global", level=Level.NORMAL, rearm=rearm)


def test_a_snooze_lifts_the_limit_until_the_injected_clock_passes_its_end() -> None:
    flag = flag_after_reset()
    key = flag.rearm.window_key  # type: ignore[union-attr]
    before = (SNOOZE_END - timedelta(seconds=1)).timestamp()
    after = (SNOOZE_END + timedelta(seconds=1)).timestamp()

    assert shutdown_limit(BUDGET, flag, key, before) is None
    assert shutdown_limit(BUDGET, flag, key, after) == Decimal("51.30")  # re-armed from the reset's spend


def test_a_rearm_of_another_window_does_not_move_this_windows_limit() -> None:
    flag = flag_after_reset()
    assert shutdown_limit(BUDGET, flag, "day#2026-11-23T00:00:00+00:00", SNOOZE_END.timestamp()) == Decimal(25)
