"""What a guarded client reads from the table: flags and current-window counters in one consistent
BatchGetItem (read-only; the client never writes flags)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from guardrail.core.models import CounterKey, Flag, ScopeTotals
from guardrail.store.counters import totals_from_item
from guardrail.store.flags import flag_from_item
from guardrail.store.table import Key, batch_get, counter_key, flag_key

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient


class DynamoFlagSource:
    """One consistent BatchGetItem for the flags and current-window counters of the scopes."""

    def __init__(self, client: DynamoDBClient, table_name: str) -> None:
        self.client = client
        self.table = table_name
        self.reads = 0  # store calls made (what the "once per TTL" guarantee counts)

    def _count(self) -> None:
        self.reads += 1

    def read(self, keys: Sequence[CounterKey]) -> tuple[dict[str, Flag], dict[CounterKey, ScopeTotals]]:
        scopes = list(dict.fromkeys(scope for scope, _ in keys))
        flag_keys: dict[Key, str] = {flag_key(s): s for s in scopes}
        counters: dict[Key, CounterKey] = {counter_key(k): k for k in keys}
        items = batch_get(self.client, self.table, [*flag_keys, *counters], on_call=self._count)
        flags = {s: flag_from_item(items[k]) if k in items else Flag(scope=s) for k, s in flag_keys.items()}
        totals = {
            key: totals_from_item(key[0], key[1], items[k]) if k in items else ScopeTotals(scope=key[0], window=key[1])
            for k, key in counters.items()
        }
        return flags, totals
