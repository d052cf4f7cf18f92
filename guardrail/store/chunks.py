"""Planning a batch's transactions: one copy per request id, each counter summed once per transaction.

A transaction holds at most 100 items and never two operations on one item, so a chunk sums its records
per counter first. A copy that replaces the one a request item holds (guardrail.store.copies) takes the
held copy's contribution back out of the same sums: the correction is part of the one transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from guardrail.core.models import CounterKey, PricedRecord, UsageRecord
from guardrail.store.copies import AUTHORITATIVE, HeldCopy, better, tokens

MAX_TRANSACTION_ITEMS = 100
ZERO = Decimal(0)


def num(value: Decimal | int) -> dict[str, str]:
    """A DynamoDB number in plain notation (never float, never exponent form)."""
    return {"N": format(value, "f") if isinstance(value, Decimal) else str(value)}


def dimension_keys(model_id: str, app: str, caller: str) -> list[str]:
    """Who spent: the model, the app (request metadata) and the caller identity."""
    keys = [f"model:{model_id}"]
    if app:
        keys.append(f"app:{app}")
    if caller:
        keys.append(f"caller:{caller}")
    return keys


def breakdown_keys(record: UsageRecord) -> list[str]:
    return dimension_keys(record.model_id, record.metadata.get("app", ""), record.caller)


@dataclass(slots=True)
class CounterDelta:
    spend: Decimal = Decimal(0)
    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    unconfirmed: Decimal = Decimal(0)  # spend only a client reported (no invocation log yet)
    unconfirmed_requests: int = 0
    breakdown: dict[str, Decimal] = field(default_factory=dict)

    def add(self, priced: PricedRecord, keys: list[str]) -> None:
        r = priced.record
        cost = priced.price.cost
        self.spend += cost
        self.requests += 1
        self.input_tokens += r.input_tokens
        self.output_tokens += r.output_tokens
        self.cache_read_tokens += r.cache_read_tokens
        self.cache_write_tokens += r.cache_write_tokens
        if r.source != AUTHORITATIVE:
            self.unconfirmed += cost
            self.unconfirmed_requests += 1
        breakdown = self.breakdown
        for key in keys:
            breakdown[key] = breakdown.get(key, ZERO) + cost

    def remove(self, held: HeldCopy) -> None:
        """Take back what a superseded copy added."""
        cost = held.cost
        self.spend -= cost
        self.requests -= 1
        self.input_tokens -= held.input_tokens
        self.output_tokens -= held.output_tokens
        self.cache_read_tokens -= held.cache_read_tokens
        self.cache_write_tokens -= held.cache_write_tokens
        if held.source != AUTHORITATIVE:
            self.unconfirmed -= cost
            self.unconfirmed_requests -= 1
        for key in dimension_keys(held.model_id, held.app, held.caller):
            self.breakdown[key] = self.breakdown.get(key, ZERO) - cost


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """A priced record and every counter it adds to."""

    priced: PricedRecord
    counters: tuple[CounterKey, ...]


@dataclass(slots=True)
class Chunk:
    """The contents of one transaction: at most 100 items, one operation per item. `held` names the
    entries that replace a held copy (a conditional put on that copy, and its counters corrected)."""

    entries: list[LedgerEntry] = field(default_factory=list)
    counters: dict[CounterKey, CounterDelta] = field(default_factory=dict)
    held: dict[str, HeldCopy] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return len(self.entries) + len(self.counters)


def resolve_copies(
    entries: Iterable[LedgerEntry], dropped: list[str] | None = None, superseded: list[str] | None = None
) -> list[LedgerEntry]:
    """One copy per request id, the one that counts (guardrail.store.copies); the order of first sight is
    kept. Identical repeats go to `dropped`, copies that lost to a better one to `superseded`."""
    out: list[LedgerEntry] = []
    at: dict[str, int] = {}
    for entry in entries:
        rid = entry.priced.record.request_id
        i = at.get(rid)
        if i is None:
            at[rid] = len(out)
            out.append(entry)
            continue
        kept = out[i]
        new, old = entry.priced.record, kept.priced.record
        if better(new, old):
            out[i], loser = entry, old
        else:
            loser = new
        same = loser.source == out[i].priced.record.source and tokens(loser) == tokens(out[i].priced.record)
        target = dropped if same else superseded
        if target is not None:
            target.append(rid)
    return out


def plan_chunks(
    entries: Iterable[LedgerEntry],
    limit: int = MAX_TRANSACTION_ITEMS,
    dropped: list[str] | None = None,
    superseded: list[str] | None = None,
    held: Mapping[str, HeldCopy] | None = None,
) -> list[Chunk]:
    """Pack entries into transactions, summing each chunk's records per counter first.

    Copies of one request id in the input resolve to the one that counts (see `resolve_copies`); an entry
    named in `held` replaces that held copy, whose counters get its contribution taken back.
    """
    chunks: list[Chunk] = []
    current = Chunk()
    for entry in resolve_copies(entries, dropped, superseded):
        rid = entry.priced.record.request_id
        old = held.get(rid) if held else None
        touched = entry.counters if old is None else tuple(dict.fromkeys(entry.counters + old.counters))
        new_counters = sum(1 for c in touched if c not in current.counters)
        if current.entries and current.size + 1 + new_counters > limit:
            chunks.append(current)
            current = Chunk()
        current.entries.append(entry)
        keys = breakdown_keys(entry.priced.record)
        counters = current.counters
        for key in entry.counters:
            delta = counters.get(key)
            if delta is None:
                delta = counters[key] = CounterDelta()
            delta.add(entry.priced, keys)
        if old is not None:
            current.held[rid] = old
            for key in old.counters:
                delta = counters.get(key)
                if delta is None:
                    delta = counters[key] = CounterDelta()
                delta.remove(old)
    if current.entries:
        chunks.append(current)
    return chunks
