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
from guardrail.core.models import (
    RATE_WINDOW,
    CounterKey,
    QuarantinedRecord,
    ScopeTotals,
    WindowRef,
)
from guardrail.store.chunks import Chunk, CounterDelta, LedgerEntry, num, plan_chunks
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
ZERO = Decimal(0)


@dataclass
class RecordOutcome:
    recorded: list[LedgerEntry] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    write_calls: int = 0

    @property
    def touched(self) -> set[CounterKey]:
        return {c for e in self.recorded for c in e.counters}


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
        for chunk in plan_chunks(entries, dropped=outcome.duplicates):
            self._write_chunk(chunk, outcome)
        return outcome

    def _write_chunk(self, chunk: Chunk, outcome: RecordOutcome) -> None:
        pending = chunk
        attempt = 0  # contended attempts only: dropping duplicates always makes progress
        while attempt < MAX_ATTEMPTS:
            items = self._transaction_items(pending)
            outcome.write_calls += 1
            try:
                self.client.transact_write_items(TransactItems=items)  # type: ignore[arg-type]
            except self.client.exceptions.TransactionCanceledException as exc:
                reasons = exc.response.get("CancellationReasons", [])
                dupes = {
                    pending.entries[i].priced.record.request_id
                    for i, reason in enumerate(reasons[: len(pending.entries)])
                    if reason.get("Code") == "ConditionalCheckFailed"
                }
                if dupes:
                    outcome.duplicates.extend(sorted(dupes))
                    rest = [e for e in pending.entries if e.priced.record.request_id not in dupes]
                    if not rest:
                        return
                    pending = plan_chunks(rest)[0]  # fewer items than before: still one chunk
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
            return
        raise LedgerError(
            f"ledger transaction still contended after {MAX_ATTEMPTS} attempts; "
            f"{len(pending.entries)} records not counted (the event will be retried)"
        )

    def _backoff(self, attempt: int) -> None:
        self.sleep(min(2.0, 0.02 * 2**attempt) * random.random())

    def _transaction_items(self, chunk: Chunk) -> list[dict[str, Any]]:
        expires = num(int((self.now() + self.request_ttl).timestamp()))
        items: list[dict[str, Any]] = []
        for entry in chunk.entries:
            items.append({"Put": self._request_put(entry, expires)})
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

    def _request_put(self, entry: LedgerEntry, expires: dict[str, str]) -> dict[str, Any]:
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
            "scopes": {"L": [{"S": f"{s}|{w.key}"} for s, w in entry.counters]},
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
        return {
            "TableName": self.table,
            "Item": item,
            "ConditionExpression": "attribute_not_exists(pk)",
        }

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
