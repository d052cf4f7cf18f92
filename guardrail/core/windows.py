"""Calendar budget windows in a configured time zone. A day is a calendar day, not the last 24 h."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from guardrail.core.models import WindowKind, WindowRef

# Every UTC offset in use is a multiple of 15 minutes, so all instants of one 15-minute UTC slice share
# every window (a 5-minute bucket aside): the hot path computes each window once per slice.
SLICE_SECONDS = 900
BUCKET_SECONDS = 300
# 5-minute buckets are read for two things only: the burn rate (a scope's last BURN_BUCKETS buckets) and
# unconfirmed spend (the buckets inside the confirmation grace period). A bucket that ended before both
# look-backs is never read, so a late record does not write it (a replay of a day's logs would otherwise
# write a bucket per scope for every 5 minutes of that day). The margin covers clocks that disagree.
BURN_BUCKETS = 3
BUCKET_READ_MARGIN = timedelta(hours=1)


def window_for(at: datetime, kind: WindowKind, zone: ZoneInfo) -> WindowRef:
    """The calendar window (5-minute bucket, hour, day or month in `zone`) that contains the instant `at`."""
    if at.tzinfo is None:
        raise ValueError("window_for needs an aware datetime (naive times are ambiguous)")
    return window_at(int(at.timestamp()), kind, zone)


def bucket_cutoff(now: datetime, look_back: timedelta) -> int:
    """Epoch seconds: a 5-minute bucket that ends at or before this is never read again by a reader looking
    back `look_back` (from now, or from any later time)."""
    return int((now - look_back - BUCKET_READ_MARGIN).timestamp())


def window_at(epoch: int, kind: WindowKind, zone: ZoneInfo) -> WindowRef:
    """`window_for` from whole epoch seconds (the hot path computes the epoch once per record)."""
    if kind == "5min":
        return _sliced(epoch - epoch % BUCKET_SECONDS, kind, zone)
    return _sliced(epoch - epoch % SLICE_SECONDS, kind, zone)


@lru_cache(maxsize=8192)
def _sliced(slice_start: int, kind: WindowKind, zone: ZoneInfo) -> WindowRef:
    return _compute(datetime.fromtimestamp(slice_start, UTC), kind, zone)


def _compute(at: datetime, kind: WindowKind, zone: ZoneInfo) -> WindowRef:
    local = at.astimezone(zone)
    if kind == "5min":
        utc = at.astimezone(UTC)
        start = utc - timedelta(minutes=utc.minute % 5, seconds=utc.second, microseconds=utc.microsecond)
        return WindowRef(kind, start.astimezone(zone), (start + timedelta(minutes=5)).astimezone(zone))
    if kind == "hour":
        # Floor in UTC to keep DST-repeated local hours apart; zones with 30/45-minute offsets
        # still get whole local hours because we floor the local wall clock minute and second.
        start_utc = at.astimezone(UTC) - timedelta(
            minutes=local.minute, seconds=local.second, microseconds=local.microsecond
        )
        return WindowRef(kind, start_utc.astimezone(zone), (start_utc + timedelta(hours=1)).astimezone(zone))
    if kind == "day":
        return _day(local.year, local.month, local.day, zone)
    if kind == "month":
        return _month(local.year, local.month, zone)
    raise ValueError(f"unknown window kind {kind!r}; expected hour, day or month")


@lru_cache(maxsize=4096)
def _day(year: int, month: int, day: int, zone: ZoneInfo) -> WindowRef:
    start = datetime(year, month, day, tzinfo=zone)
    following = start.date() + timedelta(days=1)
    end = datetime(following.year, following.month, following.day, tzinfo=zone)
    return WindowRef("day", start, end)


@lru_cache(maxsize=1024)
def _month(year: int, month: int, zone: ZoneInfo) -> WindowRef:
    start = datetime(year, month, 1, tzinfo=zone)
    end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=zone)
    return WindowRef("month", start, end)
