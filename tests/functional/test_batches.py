"""Ledger batches applied by sums (guardrail.store.batches) on moto DynamoDB: a batch too big for one
transaction is counted exactly once whatever happens to its writer between any two calls, whoever finishes
it (the retry, a better copy's writer, the schedule run), and whatever else arrives meanwhile."""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from guardrail.core.config import load_settings
from guardrail.core.models import RATE_WINDOW, PricedRecord, UsageRecord
from guardrail.core.pricing import Pricer
from guardrail.core.windows import BUCKET_SECONDS, bucket_cutoff, window_at
from guardrail.service.engine import Engine
from guardrail.store.batches import batch_digest
from guardrail.store.chunks import LedgerEntry, plan_chunks, sum_counts
from guardrail.store.table import create_table
from tests.support.common import TABLE, Clock
from tests.support.crash import count_transactions, dies
from tests.support.factories import record

NOW = datetime(2026, 11, 22, 10, 45, tzinfo=UTC)
BUDGETS = json.dumps(
    [{"scope": s, "thresholds": "alert=1000,throttle=2000,shutdown=3000"} for s in ("global", "app:*", "tenant:*")]
)
PRICER = Pricer(ceiling=load_settings().ceiling_rate)


def spread(prefix: str, n: int, *, minutes: int = 120, **kwargs: Any) -> list[UsageRecord]:
    """`n` records over the last `minutes` (about one per 5-minute bucket each), three apps, two tenants."""
    return [
        record(
            f"{prefix}-{i}",
            input_tokens=1000 + i,
            output_tokens=100 + i % 7,
            at=NOW - timedelta(minutes=minutes * i / n),
            app=("chat", "search", "agent")[i % 3],
            tenant=("acme", "globex")[i % 2],
            **kwargs,
        )
        for i in range(n)
    ]


def cost(records: list[UsageRecord]) -> Decimal:
    return sum((PRICER.price(r).cost for r in {r.request_id: r for r in records}.values()), Decimal(0))


class Ledgers:
    """A fresh table per case (several cases per test), an engine on it, and what the table holds."""

    def __init__(self, ddb: Any, clock: Clock) -> None:
        self.ddb = ddb
        self.clock = clock
        self.n = 0

    def engine(self, table: str | None = None) -> Engine:
        settings = load_settings(table_name=table or self.table, budgets=BUDGETS)
        engine = Engine(settings, dynamodb=self.ddb, now=self.clock)
        engine.ledger.sleep = lambda _: None
        return engine

    def fresh(self) -> Engine:
        self.n += 1
        self.table = f"{TABLE}-{self.n}"
        create_table(self.ddb, self.table)
        return self.engine()

    def spend(self, scope: str = "global") -> tuple[Decimal, int]:
        t = self.engine().scope_totals(scope)
        return t.spend, t.requests

    def bucket(self, scope: str, at: datetime) -> tuple[Decimal, int]:
        engine = self.engine()
        window = window_at(int(at.timestamp()), RATE_WINDOW, engine.zone)
        t = engine.ledger.totals([(scope, window)])[(scope, window)]
        return t.spend, t.requests

    def open_batches(self) -> list[dict[str, Any]]:
        resp = self.ddb.query(
            TableName=self.table,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": "OPENBATCH"}},
            ConsistentRead=True,
        )
        return list(resp["Items"])


@pytest.fixture
def ledgers(ddb: Any, clock: Clock) -> Ledgers:
    clock.at = NOW
    return Ledgers(ddb, clock)


def assert_exact(ledgers: Ledgers, records: list[UsageRecord]) -> None:
    """Totals per scope and per 5-minute bucket equal the records' own, each request once. A bucket too old to
    be read again when the records were counted (guardrail.core.windows.bucket_cutoff) holds nothing; the
    tests count records between NOW and NOW + 11 min, so the buckets that age out in between may hold some."""
    unique = list({r.request_id: r for r in records}.values())
    assert ledgers.spend("global") == (cost(unique), len(unique))
    for app in ("chat", "search", "agent"):
        mine = [r for r in unique if r.metadata.get("app") == app]
        assert ledgers.spend(f"app:{app}") == (cost(mine), len(mine)), app
    buckets: dict[datetime, list[UsageRecord]] = {}
    engine = ledgers.engine()
    for r in unique:
        buckets.setdefault(window_at(int(r.timestamp.timestamp()), RATE_WINDOW, engine.zone).start, []).append(r)
    aged = bucket_cutoff(NOW, engine.copy_look_back)
    readable = bucket_cutoff(NOW + timedelta(minutes=15), engine.copy_look_back)
    assert any(s.timestamp() + BUCKET_SECONDS <= aged for s in buckets)  # both kinds are checked
    for start, rs in buckets.items():
        end = start.timestamp() + BUCKET_SECONDS
        if end > readable:
            assert ledgers.bucket("global", start) == (cost(rs), len(rs)), start
        elif end <= aged:
            assert ledgers.bucket("global", start) == (Decimal(0), 0), start
    assert ledgers.open_batches() == []


def test_a_spread_batch_is_counted_once_in_far_fewer_transactions(ledgers: Ledgers) -> None:
    engine = ledgers.fresh()
    records = spread("s", 300)
    entries, _ = engine.entries(records)
    _, items = sum_counts(entries)  # distinct counters and breakdown items the batch adds to
    sent = count_transactions(ledgers.ddb)
    result = engine.ingest(records)
    assert len(result.recorded) == 300 and not result.duplicates
    # Each request item written once, each counter and breakdown item once: 97 to a transaction.
    assert sent[0] == math.ceil(300 / 97) + math.ceil(items / 97) < len(plan_chunks(entries)), (sent[0], items)
    assert_exact(ledgers, records)


def test_a_redelivered_or_overlapping_batch_adds_nothing_twice(ledgers: Ledgers) -> None:
    engine = ledgers.fresh()
    first = spread("s", 200)
    engine.ingest(first)
    again = engine.ingest(first)
    assert not again.recorded and sorted(again.duplicates) == sorted(r.request_id for r in first)
    overlap = first[100:] + spread("t", 150)
    result = engine.ingest(list(reversed(overlap)))
    assert len(result.recorded) == 150 and len(result.duplicates) == 100
    assert_exact(ledgers, first + overlap)


def _crash_points(ledgers: Ledgers, records: list[UsageRecord]) -> int:
    """How many transactions the batch takes when nothing goes wrong."""
    engine = ledgers.fresh()
    sent = count_transactions(ledgers.ddb)
    before = sent[0]
    engine.ingest(records)
    assert_exact(ledgers, records)
    return sent[0] - before


def _crashed(ledgers: Ledgers, records: list[UsageRecord], call: int, after: bool) -> Engine:
    engine = ledgers.fresh()
    with dies(ledgers.ddb, call, after=after):
        engine.ingest(records)
    return engine


RECOVERIES: dict[str, Callable[[Ledgers, Engine, list[UsageRecord]], list[UsageRecord]]] = {
    # The Lambda retry of the same event (a new process: a new engine).
    "the same event again": lambda ls, _, rs: (ls.engine().ingest(list(reversed(rs))), rs)[1],
    # No retry ever comes: the schedule run applies what was claimed, then the event is redriven.
    "the schedule run, then a redrive": lambda ls, _, rs: _sweep_then(ls, rs, rs),
    # Another delivery shares half the requests before anyone finishes the first.
    "an overlapping batch, the schedule run, the retry": lambda ls, _, rs: _overlap_then_sweep(ls, rs),
}


def _sweep_then(ledgers: Ledgers, claimed: list[UsageRecord], later: list[UsageRecord]) -> list[UsageRecord]:
    ledgers.clock.at = NOW + timedelta(minutes=11)
    try:
        ledgers.engine().complete_open_batches(timedelta(minutes=10))
        ledgers.engine().ingest(later)
    finally:
        ledgers.clock.at = NOW
    return claimed + later


def _overlap_then_sweep(ledgers: Ledgers, records: list[UsageRecord]) -> list[UsageRecord]:
    other = records[::2] + spread("o", 40)
    ledgers.engine().ingest(other)
    return _sweep_then(ledgers, records + other, records)


@pytest.mark.parametrize("recovery", list(RECOVERIES))
def test_a_writer_dying_between_any_two_calls_loses_and_doubles_nothing(ledgers: Ledgers, recovery: str) -> None:
    records = spread("c", 250)
    calls = _crash_points(ledgers, records)
    assert calls >= 5  # claims and parts: there are points between them to die at
    for call in range(1, calls + 1):
        for after in (False, True):
            engine = _crashed(ledgers, records, call, after)
            everything = RECOVERIES[recovery](ledgers, engine, records)
            assert_exact(ledgers, everything)


def test_a_batch_whose_last_requests_are_all_held_elsewhere_is_sealed_alone_and_survives_any_crash(
    ledgers: Ledgers,
) -> None:
    # 97 new requests, then 60 another writer counted already: the second claim is all duplicates, so the
    # seal is a transaction of its own; a retry then finds nothing left to claim but its own claims.
    earlier = spread("e", 60)
    records = spread("n", 97) + earlier
    engine = ledgers.fresh()
    engine.ingest(earlier)
    sent = count_transactions(ledgers.ddb)
    before = sent[0]
    result = engine.ingest(records)
    calls = sent[0] - before
    assert len(result.recorded) == 97 and len(result.duplicates) == 60
    assert calls >= 4  # claim, cancelled claim, seal, parts
    assert_exact(ledgers, records)
    for call in range(1, calls + 1):
        for after in (False, True):
            engine = ledgers.fresh()
            engine.ingest(earlier)
            with dies(ledgers.ddb, call, after=after):
                engine.ingest(records)
            retry = ledgers.engine().ingest(records)  # the Lambda retry, at once: no schedule run
            assert len(retry.recorded) + len(retry.duplicates) == len(records)
            assert_exact(ledgers, records)


def test_a_better_copy_waits_for_the_open_batch_of_the_copy_it_replaces(ledgers: Ledgers) -> None:
    # Client reports (provisional) claimed by a writer that died before applying them; the logs arrive.
    reports = [replace(r, source="event") for r in spread("r", 200)]
    engine = ledgers.fresh()
    _die_after_claims(ledgers, engine, reports)
    assert ledgers.spend() == (Decimal(0), 0)  # claimed, not yet applied
    logs = spread("r", 200)
    result = ledgers.engine().ingest(logs)
    assert len(result.corrected) == 200
    assert_exact(ledgers, logs)
    totals = ledgers.engine().scope_totals("global")
    assert totals.unconfirmed == 0 and totals.unconfirmed_requests == 0


def _die_after_claims(ledgers: Ledgers, engine: Engine, records: list[UsageRecord]) -> None:
    """Let the claims through (3 transactions for 200 records), die before the first part."""
    with dies(ledgers.ddb, 4, after=False):
        engine.ingest(records)


@pytest.mark.usefixtures("serialised_dynamodb")
def test_concurrent_deliveries_of_one_batch_and_of_overlapping_ones_count_each_request_once(
    ledgers: Ledgers,
) -> None:
    ledgers.fresh()
    first = spread("p", 200)
    second = first[50:150] + spread("q", 100)
    batches = [first, first, list(reversed(first)), second, second]
    errors: list[BaseException] = []

    def deliver(records: list[UsageRecord]) -> None:
        try:
            ledgers.engine().ingest(records)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=deliver, args=(b,)) for b in batches]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert_exact(ledgers, first + second)


def test_the_schedule_run_leaves_a_live_writers_batch_alone(ledgers: Ledgers) -> None:
    engine = ledgers.fresh()
    records = spread("l", 200)
    _die_after_claims(ledgers, engine, records)
    ledgers.clock.at = NOW + timedelta(minutes=5)  # within the writer's time: maybe still running
    done, _ = ledgers.engine().complete_open_batches(timedelta(minutes=10))
    assert done == [] and ledgers.spend() == (Decimal(0), 0) and len(ledgers.open_batches()) == 1


def test_a_request_id_made_of_separators_cannot_make_two_batches_one() -> None:
    # One request whose id spells "a, then b" in any separator scheme, against the requests a and b.
    a, b = record("a", input_tokens=5, output_tokens=0), record("b", input_tokens=7, output_tokens=0)
    forged = record("a\x1finvocation-log\x1f5\x1eb", input_tokens=7, output_tokens=0)

    def entry(r: UsageRecord) -> LedgerEntry:
        return LedgerEntry(PricedRecord(r, PRICER.price(r)), ())

    assert batch_digest([entry(forged)]) != batch_digest([entry(a), entry(b)])
    assert batch_digest([entry(a), entry(b)]) == batch_digest([entry(b), entry(a)])  # order is not content
