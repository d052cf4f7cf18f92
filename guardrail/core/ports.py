"""The port between the two products: how a guarded client in ledger mode writes usage through the
Lambda-side service without importing it (the service implements it; the client receives it)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from guardrail.core.models import CounterKey, Flag, ScopeTotals, UsageRecord


@dataclass(frozen=True, slots=True)
class LedgerWrite:
    """What one write told the writer: the fresh totals of the counters it touched, and the flags after
    every transition it won (their effects already applied)."""

    totals: Mapping[CounterKey, ScopeTotals] = field(default_factory=dict)
    flags: Sequence[Flag] = ()


class LedgerWriter(Protocol):
    """Records usage exactly as the usage function does: ledger, transitions, effects, alerts."""

    def write(self, records: Sequence[UsageRecord]) -> LedgerWrite: ...
