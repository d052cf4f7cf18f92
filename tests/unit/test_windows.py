"""Windows are calendar periods in the configured zone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from guardrail.core.windows import window_for


@pytest.mark.parametrize("zone", ["UTC", "Europe/Berlin", "America/Los_Angeles", "Asia/Kolkata"])
def test_last_millisecond_and_midnight_fall_in_different_days(zone: str) -> None:
    tz = ZoneInfo(zone)
    before = datetime(2026, 11, 22, 23, 59, 59, 999000, tzinfo=tz)
    after = datetime(2026, 11, 23, 0, 0, 0, tzinfo=tz)
    a, b = window_for(before, "day", tz), window_for(after, "day", tz)
    assert a.key != b.key
    assert a.end == b.start == after
    assert a.start == datetime(2026, 11, 22, tzinfo=tz)


def test_day_is_a_calendar_day_in_the_zone_not_utc() -> None:
    tz = ZoneInfo("Europe/Berlin")
    # 23:30 UTC on the 22nd is already the 23rd in Berlin.
    w = window_for(datetime(2026, 11, 22, 23, 30, tzinfo=UTC), "day", tz)
    assert w.start == datetime(2026, 11, 23, tzinfo=tz)


def test_dst_day_is_23_hours_and_month_is_calendar() -> None:
    tz = ZoneInfo("Europe/Berlin")
    w = window_for(datetime(2026, 3, 29, 12, tzinfo=tz), "day", tz)
    assert w.end.astimezone(UTC) - w.start.astimezone(UTC) == timedelta(hours=23)
    m = window_for(datetime(2026, 2, 14, tzinfo=tz), "month", tz)
    assert (m.start.day, m.end.month, m.end.day) == (1, 3, 1)
    dec = window_for(datetime(2026, 12, 31, 23, tzinfo=tz), "month", tz)
    assert dec.end == datetime(2027, 1, 1, tzinfo=tz)


def test_repeated_dst_hour_gets_two_windows() -> None:
    tz = ZoneInfo("America/New_York")
    first = window_for(datetime(2026, 11, 1, 5, 30, tzinfo=UTC), "hour", tz)  # 01:30 EDT
    second = window_for(datetime(2026, 11, 1, 6, 30, tzinfo=UTC), "hour", tz)  # 01:30 EST
    assert first.key != second.key
    assert first.end == second.start


def test_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        window_for(datetime(2026, 11, 22), "day", ZoneInfo("UTC"))
