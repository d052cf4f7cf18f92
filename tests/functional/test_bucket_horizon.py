"""5-minute buckets are written only while something may still read them (guardrail.core.windows.bucket_cutoff):
a late record counts in its budget windows in full but writes no bucket nobody reads, and what reads buckets
(the burn rate, unconfirmed spend) still sees everything it needs. Through the usage handler."""

from __future__ import annotations

import io
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from guardrail.core.models import RATE_WINDOW, ScopeTotals, UsageRecord
from guardrail.core.windows import window_for
from guardrail.service.runtime import default_runtime
from guardrail.tools.cli import main
from tests.support.factories import log_line, logs_event, record, usage_event
from tests.support.world import World

BIG = {"input_tokens": 100_000, "output_tokens": 10_000}


def bucket(at: datetime, scope: str = "global") -> ScopeTotals:
    engine = default_runtime().engine
    window = window_for(at, RATE_WINDOW, engine.zone)
    return engine.ledger.totals([(scope, window)])[(scope, window)]


def cost(r: UsageRecord) -> Decimal:
    return default_runtime().engine.pricer.price(r).cost


def unconfirmed() -> dict[str, object] | None:
    out = io.StringIO()
    assert main(["status", "--json"], out=out) == 0
    (entry,) = [s for s in json.loads(out.getvalue())["scopes"] if s["scope"] == "global"]
    return entry.get("unconfirmed")  # type: ignore[no-any-return]


@pytest.fixture
def grace(world: World, monkeypatch: pytest.MonkeyPatch) -> World:
    """A confirmation grace period of 4 hours: client reports' buckets are read that far back."""
    monkeypatch.setenv("GUARDRAIL_UNCONFIRMED_AFTER_MINUTES", "240")
    default_runtime.cache_clear()
    return world


def test_a_late_log_counts_in_its_window_and_writes_no_bucket_nobody_reads(world: World) -> None:
    now = datetime.now(UTC)
    late = record("late", at=now - timedelta(hours=3), **BIG)
    fresh = record("fresh", at=now - timedelta(minutes=1), **BIG)
    result = world.usage(logs_event([log_line(late), log_line(fresh)]))
    assert result["recorded"] == 2
    assert Decimal(result["spend"]["global"]) == cost(late) + cost(fresh)
    assert (bucket(late.timestamp).spend, bucket(late.timestamp).requests) == (Decimal(0), 0)
    assert (bucket(fresh.timestamp).spend, bucket(fresh.timestamp).requests) == (cost(fresh), 1)


def test_a_log_an_hour_old_still_writes_its_bucket(world: World) -> None:
    # Within the burn rate's 15 minutes and the margin for clocks that disagree.
    at = datetime.now(UTC) - timedelta(minutes=60)
    r = record("an-hour", at=at, **BIG)
    world.usage(logs_event([log_line(r)]))
    assert (bucket(at).spend, bucket(at).requests) == (cost(r), 1)


def test_client_reports_keep_their_buckets_for_the_whole_confirmation_grace(grace: World) -> None:
    now = datetime.now(UTC)
    r = replace(record("report", at=now - timedelta(hours=3), **BIG), source="event")
    grace.usage(usage_event(r))
    held = bucket(r.timestamp)
    assert (held.unconfirmed, held.unconfirmed_requests) == (cost(r), 1)
    assert unconfirmed() is None  # 3 h of 4: not overdue, because its bucket says so


def test_client_reports_past_the_grace_are_overdue_without_a_bucket(world: World) -> None:
    now = datetime.now(UTC)
    r = replace(record("report", at=now - timedelta(hours=3), **BIG), source="event")
    world.usage(usage_event(r))
    assert bucket(r.timestamp).requests == 0
    assert unconfirmed() == {"spend_usd": str(cost(r)), "requests": 1, "after_minutes": 15}


def test_a_log_correcting_a_report_takes_back_the_bucket_the_report_wrote(grace: World) -> None:
    now = datetime.now(UTC)
    real = record("req", at=now - timedelta(hours=2), **BIG)
    grace.usage(usage_event(replace(real, input_tokens=50, output_tokens=3, source="event")))
    assert bucket(real.timestamp).unconfirmed_requests == 1
    result = grace.usage(logs_event([log_line(real)]))  # the log's own look-back is 15 min: no bucket
    assert result["corrected"] == 1 and Decimal(result["spend"]["global"]) == cost(real)
    b = bucket(real.timestamp)
    assert (b.spend, b.requests, b.unconfirmed, b.unconfirmed_requests) == (Decimal(0), 0, Decimal(0), 0)
    assert unconfirmed() is None
