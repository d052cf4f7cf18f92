"""Ledger and engine on moto DynamoDB: exactly once, exact totals, calendar windows, quarantine."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import boto3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto import mock_aws

from guardrail.core.config import load_settings
from guardrail.core.models import Level, UsageRecord
from guardrail.core.pricing import Pricer
from guardrail.service.engine import Engine
from guardrail.store.breakdown import top_spenders
from guardrail.store.table import create_table
from tests.support.common import TABLE, Clock
from tests.support.factories import HAIKU_3, log_line, logs_event, record

NOW = datetime(2026, 11, 22, 10, 45, tzinfo=UTC)


def exact_total(records: list[UsageRecord]) -> Decimal:
    pricer = Pricer(ceiling=load_settings().ceiling_rate)
    unique = {r.request_id: r for r in records}
    return sum((pricer.price(r).cost for r in unique.values()), Decimal(0))


def counter_calls(client: Any) -> dict[str, int]:
    calls: dict[str, int] = {}

    def count(event_name: str, **_: Any) -> None:
        op = event_name.rsplit(".", 1)[-1]
        calls[op] = calls.get(op, 0) + 1

    client.meta.events.register("before-call.dynamodb.*", count)
    return calls


def test_replaying_a_batch_counts_it_once(make_engine: Callable[..., Engine]) -> None:
    engine = make_engine()
    batch = [record(f"r{i}", input_tokens=1000 + i) for i in range(50)]
    first = engine.ingest(batch)
    second = engine.ingest(batch)
    assert len(first.recorded) == 50 and not first.duplicates
    assert not second.recorded and sorted(second.duplicates) == sorted(r.request_id for r in batch)
    assert engine.scope_totals("global").spend == exact_total(batch)
    assert engine.scope_totals("global").requests == 50


def test_a_batch_with_some_duplicates_records_the_rest(make_engine: Callable[..., Engine]) -> None:
    engine = make_engine()
    engine.ingest([record("a"), record("b")])
    result = engine.ingest([record("b"), record("c"), record("c"), record("a"), record("d")])
    assert sorted(p.record.request_id for p in result.recorded) == ["c", "d"]
    assert sorted(result.duplicates) == ["a", "b", "c"]  # the second "c" of the batch is a duplicate too
    totals = engine.scope_totals("global")
    assert totals.requests == 4
    assert totals.spend == exact_total([record(x) for x in "abcd"])


def test_counters_keep_tokens_and_spend_per_model(make_engine: Callable[..., Engine]) -> None:
    engine = make_engine()
    recs = [
        record("a", cache_read=8000, cache_write=10),
        record("b", model=HAIKU_3, input_tokens=7, output_tokens=3),
    ]
    engine.ingest(recs)
    t = engine.scope_totals("global")
    assert (t.input_tokens, t.output_tokens, t.cache_read_tokens, t.cache_write_tokens) == (
        1007,
        103,
        8000,
        10,
    )
    by_model = dict(top_spenders(engine.ledger.client, TABLE, "global", t.window, n=10)["model"].top)
    assert by_model[HAIKU_3] == exact_total([recs[1]])
    assert sum(by_model.values()) == t.spend


def test_thousand_records_over_three_scopes_take_at_most_12_write_calls(ddb: Any, clock: Clock) -> None:
    engine = Engine(
        load_settings(
            table_name=TABLE,
            budgets='[{"scope": "global"}, {"scope": "app:chat-api"}, {"scope": "tenant:*"}]',
        ),
        dynamodb=ddb,
        now=clock,
    )
    calls = counter_calls(ddb)
    result = engine.ingest([record(f"r{i}", app="chat-api", tenant="acme", input_tokens=10) for i in range(1000)])
    assert len(result.recorded) == 1000
    assert calls["TransactWriteItems"] <= 12
    for scope in ("global", "app:chat-api", "tenant:acme"):
        assert engine.scope_totals(scope).requests == 1000


@pytest.mark.parametrize("zone", ["UTC", "Europe/Berlin", "America/Los_Angeles"])
def test_records_either_side_of_local_midnight_land_in_different_days(ddb: Any, zone: str) -> None:
    from zoneinfo import ZoneInfo

    tz = ZoneInfo(zone)
    late = datetime(2026, 11, 22, 23, 59, 59, 999000, tzinfo=tz)
    early = datetime(2026, 11, 23, 0, 0, 0, tzinfo=tz)
    engine = Engine(load_settings(table_name=TABLE, timezone=zone), dynamodb=ddb, now=lambda: early)
    engine.ingest([record("late", at=late.astimezone(UTC)), record("early", at=early.astimezone(UTC))])
    items = [i for i in engine.ledger.counters_for_scope("global") if i["sk"]["S"].startswith("WINDOW#day#")]
    starts = sorted(i["window_start"]["S"] for i in items)
    assert starts == [
        datetime(2026, 11, 22, tzinfo=tz).isoformat(),
        datetime(2026, 11, 23, tzinfo=tz).isoformat(),
    ]
    assert all(i["requests"]["N"] == "1" for i in items)
    assert engine.scope_totals("global").requests == 1  # today's window holds only the midnight record


def test_malformed_records_are_quarantined_and_good_ones_count(
    make_engine: Callable[..., Engine], clock: Clock
) -> None:
    engine = make_engine()
    event = logs_event([log_line(record("good")), "garbage{", log_line(record("neg", input_tokens=-1))])
    result = engine.ingest_events([event])
    assert [p.record.request_id for p in result.recorded] == ["good"]
    assert len(result.quarantined) == 2
    stored = engine.ledger.quarantined(datetime.now(UTC))
    assert len(stored) == 2 and {s["raw"] for s in stored} >= {"garbage{"}
    assert all(s["reason"] for s in stored)


def test_unknown_model_counts_at_ceiling_and_is_reported(make_engine: Callable[..., Engine]) -> None:
    engine = make_engine()
    result = engine.ingest([record("x", model="acme.new-model-v1:0", input_tokens=1000, output_tokens=1000)])
    assert result.unknown_models == {"acme.new-model-v1:0"}
    assert engine.scope_totals("global").spend == Decimal("0.09")  # 1000 * 15 + 1000 * 75 per 1M


def test_crossing_thresholds_commits_transitions_with_audit(make_engine: Callable[..., Engine]) -> None:
    engine = make_engine()
    # Each Sonnet 4.5 record: 100k input * 3.3 + 10k output * 16.5 per 1M = 0.33 + 0.165 = $0.495
    levels = []
    for i in range(60):
        result = engine.ingest([record(f"r{i}", input_tokens=100_000, output_tokens=10_000)])
        levels.extend(c.transition.to_level for c in result.transitions)
    assert levels == [Level.ALERT, Level.THROTTLE, Level.SHUTDOWN]
    history = engine.flags.history("global")
    assert [h.action for h in history] == ["throttle->shutdown", "alert->throttle", "normal->alert"]
    assert engine.flags.get("global").level == Level.SHUTDOWN


def test_reset_rearms_from_spend_at_reset_time(make_engine: Callable[..., Engine]) -> None:
    engine = make_engine()
    engine.ingest([record("big", input_tokens=8_000_000, output_tokens=0)])  # $26.40
    assert engine.flags.get("global").level == Level.SHUTDOWN
    committed = engine.reset(scope="global", actor="alice", reason="agent loop fixed")
    assert committed.after.level == Level.NORMAL
    assert engine.ingest([record("small")]).transitions == []  # no instant re-shutdown
    assert engine.flags.history("global")[0].actor == "alice"


def test_reset_without_reason_is_refused(make_engine: Callable[..., Engine]) -> None:
    with pytest.raises(Exception, match="reason"):
        make_engine().reset(scope="global", actor="bob", reason="  ")


# -- invariants under duplicates, reordering and concurrency ----------------------------------------

batches = st.lists(
    st.tuples(st.integers(0, 40), st.integers(0, 5000), st.integers(0, 2000), st.integers(0, 9000)),
    min_size=1,
    max_size=40,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=batches, seed=st.integers(0, 2**32 - 1))
def test_replaying_shuffled_and_resplit_batches_never_changes_totals(
    rows: list[tuple[int, int, int, int]], seed: int
) -> None:
    recs = [record(f"req-{rid}", input_tokens=i, output_tokens=o, cache_read=c) for rid, i, o, c in rows]
    rng = random.Random(seed)
    with mock_aws():
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        create_table(ddb, TABLE)
        engine = Engine(load_settings(table_name=TABLE), dynamodb=ddb, now=lambda: NOW)
        engine.ingest(recs)
        once = engine.scope_totals("global")
        for _ in range(3):
            replay = recs[:]
            rng.shuffle(replay)
            cut = rng.randint(0, len(replay))
            engine.ingest(replay[:cut])
            engine.ingest(replay[cut:])
        again = engine.scope_totals("global")
    # Copies of one id (all invocation-log copies here) resolve to the fullest, whatever the order.
    fullest: dict[str, UsageRecord] = {}
    for r in recs:
        kept = fullest.get(r.request_id)
        if kept is None or r.input_tokens + r.output_tokens + r.cache_read_tokens > (
            kept.input_tokens + kept.output_tokens + kept.cache_read_tokens
        ):
            fullest[r.request_id] = r
    assert once.spend == again.spend == exact_total(list(fullest.values()))
    assert once.requests == again.requests == len(fullest)
    assert once.cache_read_tokens == again.cache_read_tokens


def test_eight_concurrent_ingesters_keep_exact_totals_and_one_transition_per_level(
    ddb: Any, serialised_dynamodb: None
) -> None:
    # 200 unique requests at $0.1650 each = $33: crosses 5, 10 and 25. Each ingester sees an
    # overlapping, shuffled slice, so most records arrive two or three times.
    recs = [record(f"req-{i}", input_tokens=50_000, output_tokens=0) for i in range(200)]
    slices = []
    for k in range(8):
        part = recs[k * 25 : k * 25 + 60] + recs[max(0, k * 25 - 20) : k * 25]
        random.Random(k).shuffle(part)
        slices.append(part)
    settings_ = load_settings(table_name=TABLE)
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def ingest(part: list[UsageRecord]) -> None:
        try:
            client = boto3.client("dynamodb", region_name="us-east-1")
            engine = Engine(settings_, dynamodb=client, now=lambda: NOW)
            barrier.wait()
            for i in range(0, len(part), 10):
                engine.ingest(part[i : i + 10])
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=ingest, args=(s,)) for s in slices]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    engine = Engine(settings_, dynamodb=ddb, now=lambda: NOW)
    totals = engine.scope_totals("global")
    covered = {r.request_id for s in slices for r in s}
    assert totals.requests == len(covered)
    assert totals.spend == exact_total([r for r in recs if r.request_id in covered])
    assert totals.spend > 25
    crossings = []
    for entry in engine.flags.history("global"):
        lo, hi = Level.parse(entry.before["level"]), Level.parse(entry.after["level"])
        crossings.extend(lvl for lvl in (Level.ALERT, Level.THROTTLE, Level.SHUTDOWN) if lo < lvl <= hi)
    assert sorted(crossings) == [Level.ALERT, Level.THROTTLE, Level.SHUTDOWN]
    assert engine.flags.get("global").level == Level.SHUTDOWN


def test_late_record_of_a_closed_window_is_counted_but_escalates_nothing(
    make_engine: Callable[..., Engine], clock: Clock
) -> None:
    engine = make_engine()
    yesterday = NOW - timedelta(days=1)
    result = engine.ingest([record("old", at=yesterday, input_tokens=9_000_000)])
    assert len(result.recorded) == 1 and result.transitions == []
    assert engine.flags.get("global").level == Level.NORMAL
