"""Counter items back into totals: one scope-window's spend, requests, tokens and spend breakdown."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from guardrail.core.models import CounterKey, ScopeTotals, WindowRef
from guardrail.store.table import BREAKDOWN_PREFIX, counter_key


def totals_from_items(
    keys: Iterable[CounterKey], items: dict[tuple[str, str], dict[str, Any]]
) -> dict[CounterKey, ScopeTotals]:
    out = {}
    for key in keys:
        item = items.get(counter_key(key))
        out[key] = totals_from_item(key[0], key[1], item) if item else ScopeTotals(scope=key[0], window=key[1])
    return out


def totals_from_item(scope: str, window: WindowRef, item: dict[str, Any]) -> ScopeTotals:
    def n(name: str) -> Decimal:
        return Decimal(item[name]["N"]) if name in item else Decimal(0)

    return ScopeTotals(
        scope=scope,
        window=window,
        spend=n("spend_usd"),
        requests=int(n("requests")),
        input_tokens=int(n("input_tokens")),
        output_tokens=int(n("output_tokens")),
        cache_read_tokens=int(n("cache_read_tokens")),
        cache_write_tokens=int(n("cache_write_tokens")),
        unconfirmed=n("unconfirmed_usd"),
        unconfirmed_requests=int(n("unconfirmed_requests")),
        breakdown={
            k.removeprefix(BREAKDOWN_PREFIX): Decimal(v["N"]) for k, v in item.items() if k.startswith(BREAKDOWN_PREFIX)
        },
    )
