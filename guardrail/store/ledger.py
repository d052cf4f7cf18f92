"""The spend ledger: every Bedrock request counted exactly once (key formats: guardrail.store.table).

A batch that fits one TransactWriteItems is written as one: each request item is put with
`attribute_not_exists(pk)` in the same transaction as the ADD on every counter it touches. A duplicate
cancels the transaction; its CancellationReasons point at the duplicate request items, which are dropped
before the retry. A bigger batch claims its request items, then applies their sums
(guardrail.store.batches); copies that replace a held one are still written the one-transaction way.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from guardrail.core.errors import LedgerError
from guardrail.core.models import CounterKey, QuarantinedRecord, ScopeTotals
from guardrail.store.batches import Batches, RecordOutcome
from guardrail.store.chunks import MAX_TRANSACTION_ITEMS, Chunk, num, resolve_copies, sum_counts
from guardrail.store.chunks import LedgerEntry as LedgerEntry  # re-exported: the ledger's input
from guardrail.store.chunks import plan_chunks as plan_chunks
from guardrail.store.copies import HeldCopy, supersedes, tokens
from guardrail.store.counters import totals_from_items
from guardrail.store.ledger_items import counter_updates, request_put
from guardrail.store.table import (
    batch_get,
    counter_key,
    counter_pk,
    item_key,
    quarantine_key,
    quarantine_pk,
)
from guardrail.store.transact import CONDITION_FAILED, MAX_ATTEMPTS, RETRYABLE_REASONS, backoff

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

__all__ = ["Ledger", "LedgerEntry", "RecordOutcome", "num", "plan_chunks"]


class Ledger:
    def __init__(
        self,
        client: DynamoDBClient,
        table_name: str,
        *,
        request_ttl_days: int = 8,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client = client
        self.table = table_name
        self.request_ttl = timedelta(days=request_ttl_days)
        self.now = now
        self.sleep = sleep
        # Through the ledger's own clock and sleep, which tests (and the demo) may swap after construction.
        self.batches = Batches(
            client, table_name, request_ttl=self.request_ttl, now=lambda: self.now(), sleep=lambda s: self.sleep(s)
        )

    # -- writing ---------------------------------------------------------------------------------

    def record(self, entries: Sequence[LedgerEntry]) -> RecordOutcome:
        """Count each request once. A batch that fits one transaction writes its request items and every
        counter they move together; a bigger one is claimed, then applied by sums (guardrail.store.batches)."""
        outcome = RecordOutcome()
        unique = resolve_copies(entries, outcome.duplicates, outcome.superseded)
        if not unique:
            return outcome
        sums, items = sum_counts(unique)
        if len(unique) + items <= MAX_TRANSACTION_ITEMS:
            self._write_chunks(unique, outcome)
            return outcome
        corrections = self.batches.record(unique, outcome, sums)
        if corrections:
            held = {rid: copy for rid, (_, copy) in corrections.items()}
            self._write_chunks([entry for entry, _ in corrections.values()], outcome, held)
        return outcome

    def _write_chunks(
        self, entries: Sequence[LedgerEntry], outcome: RecordOutcome, held: dict[str, HeldCopy] | None = None
    ) -> None:
        for chunk in plan_chunks(entries, held=held, limit=_limit(held)):
            self._write_chunk(chunk, outcome)

    def _write_chunk(self, chunk: Chunk, outcome: RecordOutcome) -> None:
        pending = chunk
        attempt = 0  # contended attempts only: a conflict round always learns a held copy or drops one
        rounds = 0
        while attempt < MAX_ATTEMPTS:
            items = self._transaction_items(pending)
            outcome.write_calls += 1
            try:
                self.client.transact_write_items(TransactItems=items)  # type: ignore[arg-type]
            except self.client.exceptions.TransactionCanceledException as exc:
                reasons: list[dict[str, Any]] = [dict(r) for r in exc.response.get("CancellationReasons", [])]
                conflicts = [
                    (pending.entries[i], reason.get("Item"))
                    for i, reason in enumerate(reasons[: len(pending.entries)])
                    if reason.get("Code") == CONDITION_FAILED
                ]
                batches = self._open_batches(pending, reasons)
                if batches:
                    # A held copy's batch is not applied yet: apply it (its writer may have died), then retry.
                    rounds += 1
                    if rounds > 2 * len(chunk.entries) + MAX_ATTEMPTS:
                        raise LedgerError("ledger batches kept opening under the ledger; the event is retried") from exc
                    for batch in batches:
                        calls, counters = self.batches.complete(batch)
                        outcome.write_calls += calls
                        outcome.touched |= counters
                    continue
                if conflicts:
                    # Each round drops a duplicate or learns a better held copy (copies only move up):
                    # bounded by the chunk, unlike contention.
                    rounds += 1
                    if rounds > 2 * len(chunk.entries) + MAX_ATTEMPTS:
                        raise LedgerError("request items kept changing under the ledger; the event is retried") from exc
                    retry = self._resolve_conflicts(pending, conflicts, outcome)
                    if retry is None:
                        return
                    pending = retry
                    continue
                codes = {r.get("Code") for r in reasons} - {"None", None}
                if codes and not codes <= RETRYABLE_REASONS:
                    raise LedgerError(f"ledger transaction refused: {sorted(c for c in codes if c)}") from exc
                backoff(self.sleep, attempt)
                attempt += 1
                continue
            except (
                self.client.exceptions.ProvisionedThroughputExceededException,
                self.client.exceptions.RequestLimitExceeded,
                self.client.exceptions.ThrottlingException,
                self.client.exceptions.TransactionInProgressException,
            ):
                backoff(self.sleep, attempt)
                attempt += 1
                continue
            outcome.recorded.extend(pending.entries)
            outcome.corrected.update(pending.held)
            outcome.touched.update(pending.counters)
            return
        raise LedgerError(
            f"ledger transaction still contended after {MAX_ATTEMPTS} attempts; "
            f"{len(pending.entries)} records not counted (the event will be retried)"
        )

    def _resolve_conflicts(
        self, pending: Chunk, conflicts: list[tuple[LedgerEntry, Any]], outcome: RecordOutcome
    ) -> Chunk | None:
        """Request items that were not what we expected. The cancellation carries each one's held copy
        (ALL_OLD), so no read is needed: a better copy replaces it (its counters corrected in the retried
        transaction, conditional on that copy), anything else is a duplicate. Returns the retry, or None."""
        held = dict(pending.held)
        dupes: set[str] = set()
        for entry, item in conflicts:
            record = entry.priced.record
            copy = HeldCopy.from_item(item)
            if copy is not None and supersedes(record.source, tokens(record), copy.source, copy.tokens):
                held[record.request_id] = copy
            else:
                held.pop(record.request_id, None)
                dupes.add(record.request_id)
        outcome.duplicates.extend(sorted(dupes))
        rest = [e for e in pending.entries if e.priced.record.request_id not in dupes]
        if not rest:
            return None
        # A correction also touches the held copy's counters: the retry may no longer fit one transaction.
        first, *more = plan_chunks(rest, held=held, limit=_limit(held))
        for extra in more:
            self._write_chunk(extra, outcome)
        return first

    def _open_batches(self, chunk: Chunk, reasons: list[dict[str, Any]]) -> list[str]:
        """The held copies' batches whose closed check failed (the checks are the chunk's last items)."""
        batches = _held_batches(chunk.held)
        checks = reasons[len(reasons) - len(batches) :] if batches else []
        return [b for b, r in zip(batches, checks, strict=True) if r.get("Code") == CONDITION_FAILED]

    def _transaction_items(self, chunk: Chunk) -> list[dict[str, Any]]:
        expires = num(int((self.now() + self.request_ttl).timestamp()))
        items: list[dict[str, Any]] = [
            {"Put": request_put(self.table, e, expires, chunk.held.get(e.priced.record.request_id))}
            for e in chunk.entries
        ]
        items.extend(counter_updates(self.table, chunk.counters))
        # A copy counted by a batch still open may not be replaced until that batch is applied
        # (guardrail.store.batches): its counters are summed from the request items it claimed.
        items.extend({"ConditionCheck": self.batches.closed_check(b)} for b in _held_batches(chunk.held))
        return items

    # -- reading ---------------------------------------------------------------------------------

    def totals(self, keys: Iterable[CounterKey]) -> dict[CounterKey, ScopeTotals]:
        """Consistent read of counters (transactions return no values). Missing counters are zero."""
        keys = list(keys)
        return totals_from_items(keys, batch_get(self.client, self.table, [counter_key(k) for k in keys]))

    # -- quarantine ------------------------------------------------------------------------------

    def quarantine(self, records: Sequence[QuarantinedRecord]) -> int:
        """Keep malformed input with its reason (30 days). Idempotent per (time, content)."""
        written = 0
        requests = []
        for q in records:
            digest = hashlib.sha256(f"{q.source}|{q.raw}".encode()).hexdigest()[:16]
            requests.append(
                {
                    "PutRequest": {
                        "Item": {
                            **item_key(quarantine_key(q.received_at, digest)),
                            "reason": {"S": q.reason},
                            "raw": {"S": q.raw or "(empty)"},
                            "source": {"S": q.source},
                            "expires_at": num(int((q.received_at + timedelta(days=30)).timestamp())),
                        }
                    }
                }
            )
        # Same (time, digest) twice in one batch would be rejected by BatchWriteItem: dedupe first.
        unique = list(
            {(r["PutRequest"]["Item"]["pk"]["S"], r["PutRequest"]["Item"]["sk"]["S"]): r for r in requests}.values()
        )
        while unique:
            batch, unique = unique[:25], unique[25:]
            request: dict[str, Any] = {self.table: batch}
            for attempt in range(MAX_ATTEMPTS):
                resp = self.client.batch_write_item(RequestItems=request)
                request = dict(resp.get("UnprocessedItems") or {})
                if not request:
                    break
                backoff(self.sleep, attempt)
            else:
                raise LedgerError("could not store quarantined records after retries")
            written += len(batch)
        return written

    def quarantined(self, day: datetime) -> list[dict[str, Any]]:
        resp = self.client.query(
            TableName=self.table,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": quarantine_pk(day)}},
        )
        return [
            {"reason": i["reason"]["S"], "raw": i["raw"]["S"], "source": i["source"]["S"], "at": i["sk"]["S"]}
            for i in resp.get("Items", [])
        ]

    def counters_for_scope(self, scope: str, limit: int = 50) -> list[dict[str, Any]]:
        resp = self.client.query(
            TableName=self.table,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": counter_pk(scope)}},
            ScanIndexForward=False,
            Limit=limit,
            ConsistentRead=True,
        )
        return list(resp.get("Items", []))


def _held_batches(held: dict[str, HeldCopy]) -> list[str]:
    """The ledger batches that count these held copies, in the order of their closed checks (the
    transaction's last items)."""
    return sorted({h.batch for h in held.values() if h.batch})


def _limit(held: dict[str, HeldCopy] | None) -> int:
    """Room for request items and counters once each held copy's batch has its closed check."""
    return MAX_TRANSACTION_ITEMS - len(_held_batches(held or {}))
