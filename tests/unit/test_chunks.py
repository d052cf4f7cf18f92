"""Packing a batch into transactions: records that share counters and breakdown items share a transaction,
whatever order they arrive in, and no transaction holds more than 100 items."""

from __future__ import annotations

import math
import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from guardrail.core.config import load_settings
from guardrail.core.models import RATE_WINDOW, CounterKey
from guardrail.service.engine import Engine
from guardrail.store.breakdown import breakdown_keys
from guardrail.store.chunks import CounterDelta, LedgerEntry, plan_chunks, sum_counts
from tests.support.factories import record

NOW = datetime(2026, 11, 22, 10, 45, tzinfo=UTC)  # just after the records (tests.support.factories)
MODELS = [
    "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
    "anthropic.claude-3-haiku-20240307-v1:0",
    "us.anthropic.claude-opus-4-1-20250805-v1:0",
]


def _entries(seed: int) -> list[LedgerEntry]:
    settings = load_settings(table_name="t", budgets='[{"scope": "global"}, {"scope": "app:*"}, {"scope": "tenant:*"}]')
    engine = Engine(settings, dynamodb=None, now=lambda: NOW)  # type: ignore[arg-type]  # no I/O
    rng = random.Random(seed)
    records = [
        replace(
            record(f"r{i}", model=rng.choice(MODELS), app=rng.choice(["chat", "search", "agent"]), tenant="acme"),
            caller=f"arn:aws:sts::123456789012:assumed-role/app/worker-{rng.randint(1, 3)}",
        )
        for i in range(1000)
    ]
    entries, _ = engine.entries(records)
    return entries


def test_a_mixed_batch_packs_near_the_floor_in_any_arrival_order() -> None:
    entries = _entries(1)
    counters = {c for e in entries for c in e.counters}
    breakdown = {
        (c, k) for e in entries for c in e.counters if c[1].kind != RATE_WINDOW for k in breakdown_keys(e.priced.record)
    }
    floor = math.ceil((len(entries) + len(counters) + len(breakdown)) / 100)
    sizes = set()
    for seed in range(3):
        shuffled = entries[:]
        random.Random(seed).shuffle(shuffled)
        chunks = plan_chunks(shuffled)
        assert all(c.size <= 100 for c in chunks)
        assert sum(len(c.entries) for c in chunks) == len(entries)
        sizes.add(len(chunks))
    assert len(sizes) == 1  # the arrival order does not change the cost
    # 14 for a floor of 11 (one write per distinct item); packed as they come: 20. Each transaction repeats
    # the counters its records touch, so the floor itself is out of reach for a mixed batch.
    assert sizes.pop() <= floor + 3


@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, len(MODELS) - 1),
            st.sampled_from(["chat", "search", ""]),
            st.integers(0, 400),  # minutes before NOW: some buckets too old to write
            st.integers(0, 2_000_000),
            st.integers(0, 50_000),
            st.integers(0, 100_000),
            st.booleans(),  # a client copy (unconfirmed) or the log
        ),
        max_size=60,
    )
)
def test_summing_by_groups_equals_adding_record_by_record(
    rows: list[tuple[int, str, int, int, int, int, bool]],
) -> None:
    settings_ = load_settings(table_name="t", budgets='[{"scope": "global"}, {"scope": "app:*"}]')
    engine = Engine(settings_, dynamodb=None, now=lambda: NOW)  # type: ignore[arg-type]  # no I/O
    records = [
        replace(
            record(f"r{i}", model=MODELS[m], app=app or None, input_tokens=tin, output_tokens=tout),
            timestamp=NOW - timedelta(minutes=ago),
            cache_read_tokens=cache,
            source="event" if client else "invocation-log",
        )
        for i, (m, app, ago, tin, tout, cache, client) in enumerate(rows)
    ]
    entries, _ = engine.entries(records)
    expected: dict[CounterKey, CounterDelta] = {}
    for entry in entries:
        keys = breakdown_keys(entry.priced.record)
        for counter in entry.counters:
            expected.setdefault(counter, CounterDelta()).add(
                entry.priced, keys if counter[1].kind != RATE_WINDOW else ()
            )
    sums, items = sum_counts(entries)
    assert sums == expected
    assert items == len(expected) + sum(len(d.breakdown) for d in expected.values())
