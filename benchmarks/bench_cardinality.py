"""Cardinality: 100,000 distinct callers, apps and models in one day window.

Ingests 100 batches of 1,000 records (each record its own caller, app and model) through the engine into an
in-memory DynamoDB that applies exactly the operations the ledger sends (conditional Put, ADD/SET Update,
BatchGetItem, Query) and enforces DynamoDB's limits on each request: at most 100 items per transaction, keys
within 2,048 / 1,024 bytes, no item over 400 KB. moto copies the whole table per transaction (hours for this
size); the functional test tests/functional/test_cardinality.py runs the same path on moto at a smaller size.

Prints: DynamoDB calls by operation, our own CPU time (the stub's CPU time excluded), the largest
item, that the totals are exact, and the top spenders that status reads back (and what that read costs).

Run: python benchmarks/bench_cardinality.py
"""

from __future__ import annotations

import bisect
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from guardrail.core.config import load_settings
from guardrail.core.models import UsageRecord
from guardrail.core.windows import window_for
from guardrail.service.engine import Engine
from guardrail.store.breakdown import top_spenders
from guardrail.store.table import counter_key

N = 100_000
BATCH = 1_000
NOW = datetime(2026, 11, 22, 10, 45, tzinfo=UTC)
TABLE = "bench"
MAX_ITEM_BYTES = 400 * 1024


def _size(item: dict[str, Any]) -> int:
    total = 0
    for name, value in item.items():
        ((kind, v),) = value.items()
        total += len(name.encode()) + (len(v.encode()) if kind == "S" else len(str(v)))
    return total


class MemoryDynamo:
    """The subset of DynamoDB the ledger uses, with its request limits checked (cheap: no deep copies)."""

    def __init__(self) -> None:
        self.items: dict[tuple[str, str], dict[str, Any]] = {}
        self.by_pk: dict[str, dict[str, dict[str, Any]]] = {}
        self.sorted: dict[str, list[tuple[str, dict[str, Any]]]] = {}
        self.calls: Counter[str] = Counter()
        self.seconds = 0.0  # time spent inside this stub (excluded from "our" CPU time)
        self.largest = 0

    def _key(self, key: dict[str, Any]) -> tuple[str, str]:
        pk, sk = key["pk"]["S"], key["sk"]["S"]
        assert len(pk.encode()) <= 2048 and len(sk.encode()) <= 1024, "key over DynamoDB's limits"
        return pk, sk

    def _store(self, key: tuple[str, str], item: dict[str, Any]) -> None:
        size = _size(item)
        assert size <= MAX_ITEM_BYTES, f"item {key} is {size} bytes"
        self.largest = max(self.largest, size)
        self.items[key] = item
        self.by_pk.setdefault(key[0], {})[key[1]] = item

    def transact_write_items(self, TransactItems: list[dict[str, Any]]) -> dict[str, Any]:
        start = time.process_time()
        self.calls["TransactWriteItems"] += 1
        assert len(TransactItems) <= 100, "more than 100 items in one transaction"
        ops = [(kind, body) for op in TransactItems for kind, body in op.items()]
        keys = [self._key(body["Item"] if kind == "Put" else body["Key"]) for kind, body in ops]
        assert len(set(keys)) == len(keys), "two operations on one item"
        for key, (kind, body) in zip(keys, ops, strict=True):
            if kind == "Put":
                assert not (key in self.items and key[0].startswith("REQ#")), "duplicate request (not expected here)"
                self._store(key, dict(body["Item"]))
            elif kind == "Update":
                self._update(key, body)
            elif kind == "Delete":
                self.items.pop(key, None)
                self.by_pk.get(key[0], {}).pop(key[1], None)
            # ConditionCheck: nothing competes with this benchmark's one writer
        self.seconds += time.process_time() - start
        return {}

    def _update(self, key: tuple[str, str], update: dict[str, Any]) -> None:
        """`ADD a :x, b :y SET c = :z` (either part optional): numbers add, string sets join."""
        item = dict(self.items.get(key) or {"pk": {"S": key[0]}, "sk": {"S": key[1]}})
        names = update.get("ExpressionAttributeNames", {})
        values = update["ExpressionAttributeValues"]
        expression = " " + update["UpdateExpression"]
        adds, _, sets = expression.partition(" SET ")
        for clause in filter(None, adds.removeprefix(" ADD ").strip().split(", ")):
            name, value = clause.split(" ")
            name = names.get(name, name)
            if "SS" in values[value]:
                item[name] = {"SS": sorted(set(item.get(name, {"SS": []})["SS"]) | set(values[value]["SS"]))}
                continue
            before = Decimal(item[name]["N"]) if name in item else Decimal(0)
            item[name] = {"N": format(before + Decimal(values[value]["N"]), "f")}
        for clause in filter(None, sets.split(", ")):
            name, value = clause.split(" = ")
            item[names.get(name, name)] = values[value]
        self._store(key, item)

    def batch_get_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:
        start = time.process_time()
        self.calls["BatchGetItem"] += 1
        keys = RequestItems[TABLE]["Keys"]
        assert len(keys) <= 100
        found = [self.items[self._key(k)] for k in keys if self._key(k) in self.items]
        self.seconds += time.process_time() - start
        return {"Responses": {TABLE: found}}

    def query(self, **kwargs: Any) -> dict[str, Any]:
        """pk = :pk, pages of about 1 MB (as DynamoDB pages them)."""
        start = time.process_time()
        self.calls["Query"] += 1
        pk = kwargs["ExpressionAttributeValues"][":pk"]["S"]
        if pk not in self.sorted:  # no writes happen while status reads
            self.sorted[pk] = sorted(self.by_pk.get(pk, {}).items())
        rows = self.sorted[pk]
        after = kwargs.get("ExclusiveStartKey")
        first = 0 if after is None else bisect.bisect_right(rows, after["sk"]["S"], key=lambda r: r[0])
        page, size = [], 0
        for _sk, item in rows[first:]:
            if size >= 1024 * 1024:
                break
            page.append(item)
            size += _size(item)
        out: dict[str, Any] = {"Items": page}
        if first + len(page) < len(rows):
            out["LastEvaluatedKey"] = {"pk": page[-1]["pk"], "sk": page[-1]["sk"]}
        self.seconds += time.process_time() - start
        return out


def caller(i: int) -> str:
    return f"arn:aws:sts::123456789012:assumed-role/tenant-{i:06d}/session-{i:06d}"


def records(start: int) -> list[UsageRecord]:
    return [
        UsageRecord(
            request_id=f"req-{i}",
            timestamp=NOW,
            model_id=f"vendor.model-{i:06d}-v1:0",  # unknown models: priced at the ceiling rate, never $0
            input_tokens=100 + i % 1000,
            output_tokens=10,
            caller=caller(i),
            metadata={"app": f"app-{i:06d}"},
        )
        for i in range(start, start + BATCH)
    ]


def main() -> None:
    ddb = MemoryDynamo()
    settings = load_settings(table_name=TABLE, thresholds="alert=1000000,throttle=2000000,shutdown=3000000")
    engine = Engine(settings, dynamodb=ddb, now=lambda: NOW)  # type: ignore[arg-type]
    expected = Decimal(0)
    # A model id is looked up in genai-prices once per process; 100,000 new ids cost that 100,000 times.
    # Measured apart, so the figure below is what cardinality costs the ledger path.
    lookups = time.process_time()
    for start in range(0, N, BATCH):
        for r in records(start):
            engine.pricer.price(r)
    lookups = time.process_time() - lookups
    cpu = time.process_time()
    wall = time.perf_counter()
    for start in range(0, N, BATCH):
        result = engine.ingest(records(start))
        assert len(result.recorded) == BATCH and not result.quarantined
        expected += sum((p.cost for p in result.recorded), Decimal(0))
    wall = time.perf_counter() - wall
    ours = time.process_time() - cpu - ddb.seconds
    ingest_calls = dict(ddb.calls)

    window = window_for(NOW, "day", settings.zone)
    counter = ddb.items[counter_key(("global", window))]
    assert Decimal(counter["spend_usd"]["N"]) == expected and counter["requests"]["N"] == str(N)
    ddb.calls.clear()
    read = time.perf_counter()
    board = top_spenders(ddb, TABLE, "global", window)  # type: ignore[arg-type]
    read = time.perf_counter() - read
    for dim, lead in board.items():
        assert lead.distinct == N, (dim, lead.distinct)
        assert sum((v for _, v in lead.top), Decimal(0)) + lead.other == expected, dim

    print(f"{N:,} records, {N:,} distinct callers, apps and models, one day window (global budget)")
    print(
        f"DynamoDB calls for ingest: {ingest_calls} ({ingest_calls['TransactWriteItems'] / (N / 1000):.1f} "
        "TransactWriteItems per 1,000 records)"
    )
    print(
        f"our CPU time: {ours:.1f} s ({ours / N * 1e6:.0f} us per record: price (cached) + plan + request "
        f"building + totals; the stub's own {ddb.seconds:.1f} s CPU excluded); wall {wall:.1f} s; first price "
        f"lookup of {N:,} unknown model ids (once per id per process): {lookups:.1f} s CPU"
    )
    print(f"largest item: {ddb.largest:,} bytes (limit {MAX_ITEM_BYTES:,}); items in the table: {len(ddb.items):,}")
    print(f"exact: counter ${expected} over {N:,} requests; every dimension's breakdown sums to it")
    print(f"top callers: {[(k, str(v)) for k, v in board['caller'].top]} (+{board['caller'].distinct - 3:,} others)")
    print(f"status read of the top spenders: {dict(ddb.calls)} in {read:.2f} s (stub)")


if __name__ == "__main__":
    main()
