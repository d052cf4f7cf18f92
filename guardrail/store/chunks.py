"""Packing priced records into ledger transactions: at most 100 items each, one operation per item, each
chunk's records summed per counter and per breakdown key first (DESIGN.md section 6)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

from guardrail.core.models import RATE_WINDOW, CounterKey, PricedRecord
from guardrail.store.breakdown import breakdown_keys

MAX_TRANSACTION_ITEMS = 100
ZERO = Decimal(0)


def num(value: Decimal | int) -> dict[str, str]:
    """A DynamoDB number in plain notation (never float, never exponent form)."""
    return {"N": format(value, "f") if isinstance(value, Decimal) else str(value)}


@dataclass(slots=True)
class CounterDelta:
    spend: Decimal = Decimal(0)
    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    breakdown: dict[str, Decimal] = field(default_factory=dict)  # written as one item per key
    breakdown_requests: dict[str, int] = field(default_factory=dict)

    def add(self, priced: PricedRecord, keys: Sequence[str]) -> int:
        """Add one record; returns how many breakdown keys are new to this counter."""
        r = priced.record
        cost = priced.price.cost
        self.spend += cost
        self.requests += 1
        self.input_tokens += r.input_tokens
        self.output_tokens += r.output_tokens
        self.cache_read_tokens += r.cache_read_tokens
        self.cache_write_tokens += r.cache_write_tokens
        breakdown = self.breakdown
        counts = self.breakdown_requests
        new = 0
        for key in keys:
            if key in breakdown:
                breakdown[key] += cost
                counts[key] += 1
            else:
                breakdown[key] = cost
                counts[key] = 1
                new += 1
        return new


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """A priced record and every counter it adds to."""

    priced: PricedRecord
    counters: tuple[CounterKey, ...]


@dataclass(slots=True)
class Chunk:
    """The contents of one transaction: at most 100 items, one operation per item."""

    entries: list[LedgerEntry] = field(default_factory=list)
    counters: dict[CounterKey, CounterDelta] = field(default_factory=dict)
    items: int = 0  # request puts + counter updates + breakdown item updates

    @property
    def size(self) -> int:
        return self.items


def _new_items(chunk: Chunk, entry: LedgerEntry, keys: Sequence[str]) -> int:
    """Items `entry` would add to `chunk`: its request, new counters, and new breakdown items (budget
    windows only: burn-rate buckets keep no breakdown)."""
    n = 1
    for counter in entry.counters:
        delta = chunk.counters.get(counter)
        by = counter[1].kind != RATE_WINDOW
        if delta is None:
            n += 1 + (len(keys) if by else 0)
        elif by:
            n += sum(1 for k in keys if k not in delta.breakdown)
    return n


_NO_BUCKET = datetime.min.replace(tzinfo=UTC)


def _counter_order(entry: LedgerEntry) -> datetime:
    """Records of one 5-minute bucket share its burn-rate counters (and mostly their window counters)."""
    return next((window.start for _, window in entry.counters if window.kind == RATE_WINDOW), _NO_BUCKET)


def plan_chunks(
    entries: Iterable[LedgerEntry], limit: int = MAX_TRANSACTION_ITEMS, dropped: list[str] | None = None
) -> list[Chunk]:
    """Pack entries into transactions, summing each chunk's records per counter first.

    A request id seen twice in the input is kept once (a transaction may not touch one item twice);
    the repeats are appended to `dropped`.
    """
    unique: list[LedgerEntry] = []
    seen: set[str] = set()
    for entry in entries:
        rid = entry.priced.record.request_id
        if rid in seen:
            if dropped is not None:
                dropped.append(rid)
            continue
        seen.add(rid)
        unique.append(entry)
    # Entries that share counters (the same scopes and 5-minute bucket) go into the same transaction, so a
    # batch spread over hours costs close to ceil((requests + distinct counters) / 100) transactions.
    unique.sort(key=_counter_order)
    chunks: list[Chunk] = []
    current = Chunk()
    for entry in unique:
        keys = breakdown_keys(entry.priced.record)
        worst = 1 + len(entry.counters) * (1 + len(keys))
        # The exact count only near the limit: on the hot path the items are counted while adding.
        if (
            current.entries
            and current.items + worst > limit
            and current.items + _new_items(current, entry, keys) > limit
        ):
            chunks.append(current)
            current = Chunk()
        current.entries.append(entry)
        added = 1
        counters = current.counters
        for key in entry.counters:
            delta = counters.get(key)
            if delta is None:
                delta = counters[key] = CounterDelta()
                added += 1
            added += delta.add(entry.priced, keys if key[1].kind != RATE_WINDOW else ())
        current.items += added
    if current.entries:
        chunks.append(current)
    return chunks
