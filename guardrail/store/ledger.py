"""The spend ledger: every Bedrock request counted exactly once (key formats: guardrail.store.table).

A batch is written as TransactWriteItems: each request item is put with `attribute_not_exists(pk)` in the
same transaction as the ADD on every counter it touches. A duplicate cancels the transaction; its
CancellationReasons point at the duplicate request items, which are dropped before the retry.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from guardrail.core.errors import LedgerError
from guardrail.core.models import RATE_WINDOW, CounterKey, QuarantinedRecord, ScopeTotals, WindowRef
from guardrail.store.chunks import Chunk, CounterDelta, num
from guardrail.store.chunks import LedgerEntry as LedgerEntry  # re-exported: the ledger's input
from guardrail.store.chunks import plan_chunks as plan_chunks
from guardrail.store.copies import HeldCopy, counters_attribute, supersedes, tokens
from guardrail.store.counters import totals_from_items
from guardrail.store.table import (
    batch_get,
    breakdown_key,
    counter_key,
    counter_pk,
    item_key,
    quarantine_key,
    quarantine_pk,
    request_key,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

__all__ = ["Ledger", "LedgerEntry", "RecordOutcome", "num", "plan_chunks"]

MAX_ATTEMPTS = 8
RETRYABLE_REASONS = {
    "TransactionConflict",
    "ThrottlingError",
    "ProvisionedThroughputExceeded",
    "RequestLimitExceeded",
}
RATE_BUCKET_TTL = timedelta(days=2)


@dataclass
class RecordOutcome:
    """What a batch did: entries recorded (new, or replacing a held copy: `corrected`), identical repeats
    dropped (`duplicates`), and copies inside the batch that lost to a better copy (`superseded`)."""

    recorded: list[LedgerEntry] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    superseded: list[str] = field(default_factory=list)
    corrected: dict[str, HeldCopy] = field(default_factory=dict)
    write_calls: int = 0
    # Every counter a written transaction moved (the recorded entries' and the corrected copies'): collected
    # per transaction, whose counters are already distinct, rather than per record.
    touched: set[CounterKey] = field(default_factory=set)


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

    # -- writing ---------------------------------------------------------------------------------

    def record(self, entries: Sequence[LedgerEntry]) -> RecordOutcome:
        outcome = RecordOutcome()
        for chunk in plan_chunks(entries, dropped=outcome.duplicates, superseded=outcome.superseded):
            self._write_chunk(chunk, outcome)
        return outcome

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
                reasons = exc.response.get("CancellationReasons", [])
                conflicts = [
                    (pending.entries[i], reason.get("Item"))
                    for i, reason in enumerate(reasons[: len(pending.entries)])
                    if reason.get("Code") == "ConditionalCheckFailed"
                ]
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
                self._backoff(attempt)
                attempt += 1
                continue
            except (
                self.client.exceptions.ProvisionedThroughputExceededException,
                self.client.exceptions.RequestLimitExceeded,
                self.client.exceptions.ThrottlingException,
                self.client.exceptions.TransactionInProgressException,
            ):
                self._backoff(attempt)
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
        first, *more = plan_chunks(rest, held=held)
        for extra in more:
            self._write_chunk(extra, outcome)
        return first

    def _backoff(self, attempt: int) -> None:
        self.sleep(min(2.0, 0.02 * 2**attempt) * random.random())

    def _transaction_items(self, chunk: Chunk) -> list[dict[str, Any]]:
        expires = num(int((self.now() + self.request_ttl).timestamp()))
        items: list[dict[str, Any]] = []
        for entry in chunk.entries:
            items.append({"Put": self._request_put(entry, expires, chunk.held.get(entry.priced.record.request_id))})
        for (scope, window), delta in chunk.counters.items():
            items.append({"Update": self._counter_update(scope, window, delta)})
            for key, spend in delta.breakdown.items():
                items.append({"Update": self._breakdown_update(scope, window, key, spend, delta)})
        return items

    def _breakdown_update(
        self, scope: str, window: WindowRef, key: str, spend: Decimal, delta: CounterDelta
    ) -> dict[str, Any]:
        return {
            "TableName": self.table,
            "Key": item_key(breakdown_key(scope, window, key)),
            "UpdateExpression": "ADD spend_usd :s, requests :n SET by_key = :k",
            "ExpressionAttributeValues": {":s": num(spend), ":n": num(delta.breakdown_requests[key]), ":k": {"S": key}},
        }

    def _request_put(self, entry: LedgerEntry, expires: dict[str, str], held: HeldCopy | None) -> dict[str, Any]:
        r = entry.priced.record
        price = entry.priced.price
        item: dict[str, Any] = {
            **item_key(request_key(r.request_id)),
            "at": {"S": r.timestamp.astimezone(UTC).isoformat()},
            "model_id": {"S": r.model_id},
            "priced_as": {"S": price.priced_model},
            "cost_usd": num(price.cost),
            "input_tokens": num(r.input_tokens),
            "output_tokens": num(r.output_tokens),
            "cache_read_tokens": num(r.cache_read_tokens),
            "cache_write_tokens": num(r.cache_write_tokens),
            "source": {"S": r.source},
            "counters": counters_attribute(entry.counters),  # what a later, better copy takes back out
            "expires_at": expires,
        }
        if r.caller:
            item["caller"] = {"S": r.caller}
        if r.metadata:
            item["metadata"] = {"M": {k: {"S": v} for k, v in r.metadata.items()}}
        if price.at_ceiling:
            item["at_ceiling"] = {"BOOL": True}
        if r.partial:
            item["partial"] = {"BOOL": True}
        # A new request, or the copy we replace still as we read it. On failure the item comes back with the
        # cancellation (ALL_OLD): deciding duplicate or correction needs no extra read.
        condition = {"ConditionExpression": "attribute_not_exists(pk)"} if held is None else held.condition()
        return {"TableName": self.table, "Item": item, "ReturnValuesOnConditionCheckFailure": "ALL_OLD", **condition}

    def _counter_update(self, scope: str, window: WindowRef, delta: CounterDelta) -> dict[str, Any]:
        names = {
            "#spend": "spend_usd",
            "#req": "requests",
            "#in": "input_tokens",
            "#out": "output_tokens",
            "#cr": "cache_read_tokens",
            "#cw": "cache_write_tokens",
            "#scope": "scope",
            "#ws": "window_start",
            "#we": "window_end",
        }
        values: dict[str, Any] = {
            ":spend": num(delta.spend),
            ":req": num(delta.requests),
            ":in": num(delta.input_tokens),
            ":out": num(delta.output_tokens),
            ":cr": num(delta.cache_read_tokens),
            ":cw": num(delta.cache_write_tokens),
            ":scope": {"S": scope},
            ":ws": {"S": window.start.isoformat()},
            ":we": {"S": window.end.isoformat()},
        }
        adds = ["#spend :spend", "#req :req", "#in :in", "#out :out", "#cr :cr", "#cw :cw"]
        if delta.unconfirmed or delta.unconfirmed_requests:  # only client copies move it: logs write no more
            names.update({"#uc": "unconfirmed_usd", "#ucr": "unconfirmed_requests"})
            values.update({":uc": num(delta.unconfirmed), ":ucr": num(delta.unconfirmed_requests)})
            adds += ["#uc :uc", "#ucr :ucr"]
        sets = "#scope = :scope, #ws = :ws, #we = :we"
        if window.kind == RATE_WINDOW:  # burn-rate buckets are only read for a few hours
            names["#exp"] = "expires_at"
            values[":exp"] = num(int((window.end + RATE_BUCKET_TTL).timestamp()))
            sets += ", #exp = :exp"
        return {
            "TableName": self.table,
            "Key": item_key(counter_key((scope, window))),
            "UpdateExpression": "ADD " + ", ".join(adds) + " SET " + sets,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
        }

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
                self._backoff(attempt)
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
