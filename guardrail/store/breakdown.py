"""Spend by model, app and caller: one item per (scope, budget window, key), written in the ledger's
transaction (exactly once, like the counters), so no item grows with the number of callers, apps or
models (key format: guardrail.store.table). Top spenders are read back by a paginated query.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from typing import TYPE_CHECKING

from guardrail.core.models import UsageRecord, WindowRef
from guardrail.store.table import all_items, breakdown_pk

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

DIMENSIONS = ("model", "app", "caller")
ZERO = Decimal(0)


@lru_cache(maxsize=4096)  # a batch holds few distinct (model, app, caller): built once each
def dimension_keys(model_id: str, app: str, caller: str) -> tuple[str, ...]:
    """Who spent: the model, the app (request metadata) and the caller identity."""
    keys = [f"model:{model_id}"]
    if app:
        keys.append(f"app:{app}")
    if caller:
        keys.append(f"caller:{caller}")
    return tuple(keys)


def breakdown_keys(record: UsageRecord) -> tuple[str, ...]:
    return dimension_keys(record.model_id, record.metadata.get("app", ""), record.caller)


@dataclass(frozen=True, slots=True)
class Leaders:
    """The top spenders of one dimension, how many distinct values spent, and what the others spent."""

    top: list[tuple[str, Decimal]]
    distinct: int
    other: Decimal


def top_spenders(
    client: DynamoDBClient,
    table: str,
    scope: str,
    window: WindowRef,
    *,
    dimensions: Sequence[str] = DIMENSIONS,
    n: int = 3,
) -> dict[str, Leaders]:
    """Per dimension: the `n` biggest spenders of one scope-window, how many there are, and what the rest
    spent. Reads every breakdown item of the window, so its cost grows with cardinality (status, alerts);
    ingest's never does."""
    out: dict[str, Leaders] = {}
    for dimension in dimensions:
        spend: dict[str, Decimal] = {}
        for item in all_items(
            client.query,
            TableName=table,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": breakdown_pk(scope, window, dimension)}},
            ProjectionExpression="by_key, spend_usd",
            ConsistentRead=True,
        ):
            key = item["by_key"]["S"].partition(":")[2]
            spend[key] = spend.get(key, ZERO) + Decimal(item["spend_usd"]["N"])
        top = heapq.nlargest(n, spend.items(), key=lambda kv: kv[1])
        other = sum(spend.values(), ZERO) - sum((v for _, v in top), ZERO)
        out[dimension] = Leaders(top=top, distinct=len(spend), other=other)
    return out
