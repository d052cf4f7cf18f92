"""Unconfirmed spend: what only a client reported and no invocation log confirmed in time.

It counts (a client report is the fastest signal, and a guardrail that waits for logs is late), but on-call
sees it apart: a client copy is provisional until its log arrives (guardrail.store.copies). Counters keep
`unconfirmed_usd` for every window, the five-minute buckets too; what is overdue is the window's
unconfirmed spend minus that of the buckets still inside the grace period (bucket granularity: a request
is overdue up to five minutes late, never early).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

from guardrail.core.models import RATE_WINDOW, CounterKey, ScopeTotals
from guardrail.core.windows import BUCKET_SECONDS, window_for

if TYPE_CHECKING:
    from guardrail.service.engine import Engine


@dataclass(frozen=True, slots=True)
class Unconfirmed:
    spend: Decimal = Decimal(0)
    requests: int = 0
    after_minutes: int = 0


def overdue(engine: Engine, totals: ScopeTotals) -> Unconfirmed | None:
    """The scope window's spend no log confirmed within the configured time; None when invocation logging
    is off (client reports are the only copy) or nothing is unconfirmed."""
    minutes = engine.settings.unconfirmed_after_minutes
    if minutes <= 0 or (totals.unconfirmed <= 0 and totals.unconfirmed_requests <= 0):
        return None
    now = engine.now()
    window = totals.window
    keys: list[CounterKey] = []
    for i in range(minutes * 60 // BUCKET_SECONDS + 2):
        bucket = window_for(now - timedelta(seconds=i * BUCKET_SECONDS), RATE_WINDOW, engine.zone)
        if bucket.end <= now - timedelta(minutes=minutes) or bucket.start < window.start:
            break
        keys.append((totals.scope, bucket))
    recent = engine.ledger.totals(keys).values() if keys else []
    spend = totals.unconfirmed - sum((t.unconfirmed for t in recent), Decimal(0))
    requests = totals.unconfirmed_requests - sum(t.unconfirmed_requests for t in recent)
    if spend <= 0 and requests <= 0:
        return None
    return Unconfirmed(max(spend, Decimal(0)), max(requests, 0), minutes)
