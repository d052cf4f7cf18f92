"""Sending one TransactWriteItems: contention and throttling are retried with jittered backoff; a
cancellation by a failed condition is handed back with its reasons (the caller decides what it means)."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from guardrail.core.errors import LedgerError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

MAX_ATTEMPTS = 8
RETRYABLE_REASONS = {
    "TransactionConflict",
    "ThrottlingError",
    "ProvisionedThroughputExceeded",
    "RequestLimitExceeded",
}
CONDITION_FAILED = "ConditionalCheckFailed"


def backoff(sleep: Callable[[float], None], attempt: int) -> None:
    sleep(min(2.0, 0.02 * 2**attempt) * random.random())


def send(client: DynamoDBClient, items: list[Any], sleep: Callable[[float], None]) -> list[dict[str, Any]] | None:
    """None when the transaction committed; its CancellationReasons (one per item, in order) when a
    condition failed. Raises LedgerError when it stays contended or is refused for another reason.
    Items are dicts, or JSON text for a client that takes it (guardrail.store.prebuilt.accepts_text)."""
    for attempt in range(MAX_ATTEMPTS):
        try:
            client.transact_write_items(TransactItems=items)
            return None
        except client.exceptions.TransactionCanceledException as exc:
            reasons: list[dict[str, Any]] = [dict(r) for r in exc.response.get("CancellationReasons", [])]
            codes = {r.get("Code") for r in reasons} - {"None", None}
            if CONDITION_FAILED in codes:
                return reasons
            if codes and not codes <= RETRYABLE_REASONS:
                raise LedgerError(f"ledger transaction refused: {sorted(c for c in codes if c)}") from exc
        except (
            client.exceptions.ProvisionedThroughputExceededException,
            client.exceptions.RequestLimitExceeded,
            client.exceptions.ThrottlingException,
            client.exceptions.TransactionInProgressException,
        ):
            pass
        backoff(sleep, attempt)
    raise LedgerError(
        f"ledger transaction still contended after {MAX_ATTEMPTS} attempts; "
        "what it carries is not counted yet (the event will be retried)"
    )
