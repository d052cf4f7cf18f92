"""Ledger batches applied by sums: how a batch too big for one transaction is counted exactly once.

In one transaction a request item must travel with every counter and breakdown item it adds to, so a batch
whose records share few of them (spread over a day, at many scopes) fits two or three records per
100-item transaction. A batch instead:

1. Claims its request items, 97 Puts (`attribute_not_exists`, naming the batch) per transaction. Each
   claim transaction also adds the ids it claims to the batch's claim list and checks that the batch is
   still claiming; the first opens it (its state item and an entry in the open-batch index), the last
   seals it. What a sealed batch counts is fixed: the request items it claimed.
2. Applies the sums of what it claimed, each counter and breakdown item once, 97 Updates per transaction,
   each with a Put of its part marker (`attribute_not_exists`): a part is applied once, whoever applies
   it. The last part closes the batch and leaves the index.

Nothing else may change a claimed request item before its batch is closed: a better copy's transaction
checks that the batch is closed (`closed_check`) and completes it first. So anyone can complete a batch
from the table alone (`complete`): the retried invocation, a better copy's writer, or the schedule run
for a batch whose writer died (`sweep`). The batch id is a digest of the batch's content: a redelivered
event continues its own batch, or, when that one is sealed, its next generation claims what is left.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import islice
from typing import TYPE_CHECKING, Any

from guardrail.core.errors import LedgerError
from guardrail.core.models import CounterKey
from guardrail.store import prebuilt
from guardrail.store.chunks import CounterDelta, LedgerEntry, num, sum_counts
from guardrail.store.copies import HeldCopy, supersedes, tokens
from guardrail.store.ledger_items import counter_updates, counter_updates_text, request_put, request_put_text
from guardrail.store.table import all_items, batch_get, batch_key, item_key, open_batch_key, request_key
from guardrail.store.transact import CONDITION_FAILED, send

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

PER_TRANSACTION = 97  # request Puts or counter Updates; up to 3 more items are the batch's own
MAX_GENERATIONS = 8
CLAIMING, SEALED, CLOSED = "claiming", "sealed", "closed"
STATE = "STATE"


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


@dataclass
class _Claim:
    """One generation's claim: the entries it claimed now, the copies it had claimed before (a retry)."""

    batch: str
    new: list[LedgerEntry] = field(default_factory=list)
    old: list[HeldCopy] = field(default_factory=list)
    old_entries: list[LedgerEntry] = field(default_factory=list)
    opened: bool = False
    taken: bool = False  # sealed or closed by someone else: they (or `complete`) apply it


def batch_digest(entries: Iterable[LedgerEntry]) -> str:
    """The same content (request ids, sources, token counts) gives the same batch, in any order. Encoded as
    JSON, so no request id (outside text: any character) can make two different batches read alike."""
    content = sorted((e.priced.record.request_id, e.priced.record.source, tokens(e.priced.record)) for e in entries)
    return hashlib.sha256(json.dumps(content).encode()).hexdigest()[:32]


class Batches:
    def __init__(
        self,
        client: DynamoDBClient,
        table: str,
        *,
        request_ttl: timedelta,
        now: Callable[[], datetime],
        sleep: Callable[[float], None],
    ) -> None:
        self.client = client
        self.table = table
        self.request_ttl = request_ttl
        self.now = now
        self.sleep = sleep

    # -- writing ---------------------------------------------------------------------------------

    def record(
        self,
        entries: Sequence[LedgerEntry],
        outcome: RecordOutcome,
        sums: dict[CounterKey, CounterDelta] | None = None,
    ) -> dict[str, tuple[LedgerEntry, HeldCopy]]:
        """Count `entries` (one copy per request id) as a batch. `sums`: theirs, when already computed.
        Returns the entries that supersede a held copy, to be written the one-transaction way."""
        base = batch_digest(entries)
        corrections: dict[str, tuple[LedgerEntry, HeldCopy]] = {}
        pending = list(entries)
        for generation in range(1, MAX_GENERATIONS + 1):
            claim = _Claim(f"{base}.{generation}")
            pending = self._claim(claim, pending, base, outcome, corrections)
            outcome.recorded.extend(claim.new)
            outcome.recorded.extend(claim.old_entries)
            for entry in (*claim.new, *claim.old_entries):
                outcome.touched.update(entry.counters)
            if claim.taken:
                outcome.write_calls += self.complete(claim.batch)[0]
            elif claim.opened:
                whole = not claim.old and len(claim.new) == len(entries)  # claimed it all, now: `sums` holds
                counters = sums if whole and sums is not None else sum_counts(claim.new, claim.old)[0]
                outcome.write_calls += self._apply(claim.batch, counters)
            if not pending:
                return corrections
        raise LedgerError(f"ledger batch {base} was taken over {MAX_GENERATIONS} times; the event is retried")

    def _claim(
        self,
        claim: _Claim,
        entries: list[LedgerEntry],
        base: str,
        outcome: RecordOutcome,
        corrections: dict[str, tuple[LedgerEntry, HeldCopy]],
    ) -> list[LedgerEntry]:
        """Claim what is free of `entries` for `claim.batch`; returns what is left for the next generation
        when someone else sealed this one."""
        chunks = [entries[i : i + PER_TRANSACTION] for i in range(0, len(entries), PER_TRANSACTION)]
        expires = num(int((self.now() + self.request_ttl).timestamp()))
        text = prebuilt.accepts_text(self.client)
        for index, chunk in enumerate(chunks):
            last = index == len(chunks) - 1
            pending = chunk
            # The last chunk seals the batch even when none of its requests is left to claim: opened in this
            # run, or before it (a retry finding only its own claims: opening again seals it).
            while pending or (last and (claim.opened or claim.old)):
                if text:  # the runtime's own client: JSON text, neither dicts nor their serialisation
                    items: list[Any] = [request_put_text(self.table, e, expires, claim.batch) for e in pending]
                else:
                    items = [{"Put": request_put(self.table, e, expires, None, claim.batch)} for e in pending]
                if pending:
                    items.append({"Update": self._claim_list(claim.batch, index, pending, expires)})
                state_at = len(items)
                items.extend(self._state_ops(claim, last, expires))
                reasons = send(self.client, items, self.sleep)
                outcome.write_calls += 1
                if reasons is None:
                    claim.opened = True
                    claim.new.extend(pending)
                    break
                if any(r.get("Code") == CONDITION_FAILED for r in reasons[state_at:]):
                    claim.taken = claim.opened or self._state(claim.batch) == SEALED
                    return [*pending, *(e for c in chunks[index + 1 :] for e in c)]
                pending = self._sort_conflicts(claim, base, pending, reasons, outcome, corrections)
        return []

    def _sort_conflicts(
        self,
        claim: _Claim,
        base: str,
        pending: list[LedgerEntry],
        reasons: list[dict[str, Any]],
        outcome: RecordOutcome,
        corrections: dict[str, tuple[LedgerEntry, HeldCopy]],
    ) -> list[LedgerEntry]:
        """Request items already there: claimed by this batch before (a retry), counted by an earlier
        generation of it, held by another writer (a duplicate), or a worse copy (a correction)."""
        keep: list[LedgerEntry] = []
        for entry, reason in zip(pending, reasons, strict=False):
            if reason.get("Code") != CONDITION_FAILED:
                keep.append(entry)
                continue
            record = entry.priced.record
            held = HeldCopy.from_item(reason.get("Item"))
            if held is not None and held.batch == claim.batch:
                claim.old.append(held)
                claim.old_entries.append(entry)
            elif held is not None and held.batch.startswith(base + "."):
                outcome.duplicates.append(record.request_id)  # counted by an earlier generation
            elif held is not None and supersedes(record.source, tokens(record), held.source, held.tokens):
                corrections[record.request_id] = (entry, held)
            else:
                outcome.duplicates.append(record.request_id)
        return keep

    def _claim_list(
        self, batch: str, index: int, entries: list[LedgerEntry], expires: dict[str, str]
    ) -> dict[str, Any]:
        # ADD: a retried chunk only ever adds ids, whatever its attempts claimed.
        return {
            "TableName": self.table,
            "Key": item_key(batch_key(batch, f"CLAIM#{index:06d}")),
            "UpdateExpression": "ADD ids :ids SET expires_at = :exp",
            "ExpressionAttributeValues": {
                ":ids": {"SS": [e.priced.record.request_id for e in entries]},
                ":exp": expires,
            },
        }

    def _state_ops(self, claim: _Claim, last: bool, expires: dict[str, str]) -> list[dict[str, Any]]:
        key = item_key(batch_key(claim.batch, STATE))
        names = {"#state": "state"}
        if not claim.opened:  # opens it (a retry continues a batch still claiming); the only chunk also seals it
            now = self.now().isoformat()
            state = {
                **key,
                "state": {"S": SEALED if last else CLAIMING},
                "opened_at": {"S": now},
                "expires_at": expires,
            }
            index = {**item_key(open_batch_key(claim.batch)), "opened_at": {"S": now}}
            return [
                {
                    "Put": {
                        "TableName": self.table,
                        "Item": state,
                        "ConditionExpression": "attribute_not_exists(pk) OR #state = :claiming",
                        "ExpressionAttributeNames": names,
                        "ExpressionAttributeValues": {":claiming": {"S": CLAIMING}},
                    }
                },
                {"Put": {"TableName": self.table, "Item": index}},
            ]
        if last:
            return [{"Update": self._seal(claim.batch)}]
        return [
            {
                "ConditionCheck": {
                    "TableName": self.table,
                    "Key": key,
                    "ConditionExpression": "#state = :claiming",
                    "ExpressionAttributeNames": names,
                    "ExpressionAttributeValues": {":claiming": {"S": CLAIMING}},
                }
            }
        ]

    def _apply(self, batch: str, counters: dict[CounterKey, CounterDelta]) -> int:
        """Apply a sealed batch's sums, each part once; the last part closes the batch. Returns the calls.

        Parts are cut from one order every writer computes alike from the same sums (counters by scope and
        window, each followed by its breakdown keys in order), and built one at a time."""
        order = sorted(counters, key=lambda c: (c[0], c[1].key))
        ordered = {c: _sorted_breakdown(counters[c]) for c in order}
        render = counter_updates_text if prebuilt.accepts_text(self.client) else counter_updates
        ops: Iterator[Any] = render(self.table, ordered)
        total = len(counters) + sum(len(d.breakdown) for d in counters.values())
        parts = max(1, -(-total // PER_TRANSACTION))
        expires = num(int((self.now() + self.request_ttl).timestamp()))
        for index in range(parts):
            marker = {**item_key(batch_key(batch, f"PART#{index:06d}")), "expires_at": expires}
            items: list[Any] = [
                {"Put": {"TableName": self.table, "Item": marker, "ConditionExpression": "attribute_not_exists(pk)"}},
                *islice(ops, PER_TRANSACTION),
            ]
            if index == parts - 1:
                items.extend(self._close_ops(batch))
            send(self.client, items, self.sleep)  # a failed condition can only be the marker: already applied
        return parts

    def _close_ops(self, batch: str) -> list[dict[str, Any]]:
        return [
            {
                "Update": {
                    "TableName": self.table,
                    "Key": item_key(batch_key(batch, STATE)),
                    "UpdateExpression": "SET #state = :closed",
                    "ExpressionAttributeNames": {"#state": "state"},
                    "ExpressionAttributeValues": {":closed": {"S": CLOSED}},
                }
            },
            {"Delete": {"TableName": self.table, "Key": item_key(open_batch_key(batch))}},
        ]

    def _seal(self, batch: str) -> dict[str, Any]:
        """The Update that seals a batch still claiming: by its writer's last claim, or by `complete`."""
        return {
            "TableName": self.table,
            "Key": item_key(batch_key(batch, STATE)),
            "UpdateExpression": "SET #state = :sealed",
            "ConditionExpression": "#state = :claiming",
            "ExpressionAttributeNames": {"#state": "state"},
            "ExpressionAttributeValues": {":sealed": {"S": SEALED}, ":claiming": {"S": CLAIMING}},
        }

    def closed_check(self, batch: str) -> dict[str, Any]:
        """A ConditionCheck: the batch that counts a held copy is closed (or gone with its TTL)."""
        return {
            "TableName": self.table,
            "Key": item_key(batch_key(batch, STATE)),
            "ConditionExpression": "attribute_not_exists(pk) OR #state = :closed",
            "ExpressionAttributeNames": {"#state": "state"},
            "ExpressionAttributeValues": {":closed": {"S": CLOSED}},
        }

    # -- completing ------------------------------------------------------------------------------

    def _state(self, batch: str) -> str | None:
        resp = self.client.get_item(TableName=self.table, Key=item_key(batch_key(batch, STATE)), ConsistentRead=True)
        item = resp.get("Item")
        return item["state"]["S"] if item else None

    def complete(self, batch: str) -> tuple[int, set[CounterKey]]:
        """Seal (if still claiming) and apply a batch from the table alone; idempotent. Returns the write
        calls made and the counters the batch adds to."""
        state = self._state(batch)
        if state == CLAIMING:
            try:
                self.client.update_item(**self._seal(batch))
                state = SEALED
            except self.client.exceptions.ConditionalCheckFailedException:
                state = self._state(batch)  # sealed by its writer meanwhile
        if state != SEALED:  # closed, or gone: only a stale index entry may be left
            self.client.delete_item(TableName=self.table, Key=item_key(open_batch_key(batch)))
            return 1, set()
        ids = self._claimed_ids(batch)
        items = batch_get(self.client, self.table, [request_key(i) for i in ids])
        copies = [c for c in map(HeldCopy.from_item, items.values()) if c is not None and c.batch == batch]
        counters, _ = sum_counts((), copies)
        return self._apply(batch, counters), set(counters)

    def _claimed_ids(self, batch: str) -> list[str]:
        pk, _ = batch_key(batch, STATE)
        claims = all_items(
            self.client.query,
            TableName=self.table,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :claim)",
            ExpressionAttributeValues={":pk": {"S": pk}, ":claim": {"S": "CLAIM#"}},
            ConsistentRead=True,
        )
        return sorted({i for item in claims for i in item["ids"]["SS"]})

    def open_batches(self) -> list[tuple[str, datetime]]:
        """Every batch opened and not yet applied, oldest first: (id, when it was opened). Their requests are
        recorded but not yet in the counters (a writer still at work, or one that stopped: `sweep`)."""
        pk, _ = open_batch_key("")
        entries = all_items(
            self.client.query,
            TableName=self.table,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": pk}},
            ConsistentRead=True,
        )
        found = [(item["sk"]["S"], datetime.fromisoformat(item["opened_at"]["S"])) for item in entries]
        return sorted(found, key=lambda batch: batch[1])

    def sweep(self, older_than: timedelta) -> tuple[list[str], set[CounterKey]]:
        """Complete every batch opened before `older_than` ago and not closed (its writer died). Returns
        their ids and the counters they add to."""
        cutoff = self.now() - older_than
        done: list[str] = []
        touched: set[CounterKey] = set()
        for batch, opened in self.open_batches():
            if opened < cutoff:
                touched |= self.complete(batch)[1]
                done.append(batch)
        return done, touched


def _sorted_breakdown(delta: CounterDelta) -> CounterDelta:
    """The same sums with the breakdown keys in order (so every writer cuts the same parts)."""
    delta.breakdown = dict(sorted(delta.breakdown.items()))
    return delta
