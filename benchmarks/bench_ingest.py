"""Ingest throughput and DynamoDB call count.

1. Records per second for parse (invocation-log JSON) + price + aggregate (per-counter sums packed into
   transactions) on one core, no I/O. Target: at least 20,000/s.
2. DynamoDB calls for one 1,000-record batch over 3 scopes (global, app, tenant) on moto.
   Target: at most 12 write calls.
3. The copy-correction path: write calls when logs replace partial client copies, and when they are
   redelivered (nothing to correct: no more calls than a plain duplicate drop).

Run: python benchmarks/bench_ingest.py
"""

from __future__ import annotations

import json
import random
import statistics
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from guardrail.core.config import load_settings
from guardrail.service.sources import ParseResult, RecordParser
from guardrail.store.ledger import plan_chunks
from guardrail.store.table import create_table

BUDGETS = '[{"scope": "global"}, {"scope": "app:*"}, {"scope": "tenant:*"}]'
MODELS = [
    "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
    "global.anthropic.claude-haiku-4-5-20251001-v1:0",
    "anthropic.claude-3-haiku-20240307-v1:0",
    "us.anthropic.claude-opus-4-1-20250805-v1:0",
]
NOW = datetime(2026, 11, 22, 10, 45, tzinfo=UTC)


def log_lines(n: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    lines = []
    for i in range(n):
        lines.append(
            json.dumps(
                {
                    "schemaType": "ModelInvocationLog",
                    "schemaVersion": "1.0",
                    "timestamp": (NOW - timedelta(seconds=rng.randint(0, 60))).isoformat(),  # one subscription batch
                    "accountId": "123456789012",
                    "identity": {"arn": "arn:aws:sts::123456789012:assumed-role/chat-api-role/chat-api"},
                    "region": "us-east-1",
                    "requestId": f"bench-{seed}-{i}",
                    "operation": "Converse",
                    "modelId": rng.choice(MODELS),
                    "input": {
                        "inputContentType": "application/json",
                        "inputTokenCount": rng.randint(1, 20_000),
                        "cacheReadInputTokenCount": rng.choice([0, 0, 8000]),
                        "cacheWriteInputTokenCount": rng.choice([0, 0, 0, 25_000]),
                    },
                    "output": {"outputContentType": "application/json", "outputTokenCount": rng.randint(1, 2000)},
                    "requestMetadata": {"app": "chat-api", "tenant": rng.choice(["acme", "globex"])},
                }
            )
        )
    return lines


def throughput(n: int = 20_000, rounds: int = 5) -> float:
    from guardrail.service.engine import Engine

    settings = load_settings(table_name="bench", budgets=BUDGETS)
    engine = Engine(settings, dynamodb=None, now=lambda: NOW)  # type: ignore[arg-type]  # no I/O here
    parser = RecordParser(settings.max_tokens_per_request)
    lines = log_lines(n)
    # Warm the per-model price cache once, as a running Lambda would be.
    warm = ParseResult()
    for line in lines[:50]:
        parser.invocation_log_line(line, warm)
    engine.entries(warm.records)
    rates = []
    for _ in range(rounds):
        start = time.perf_counter()
        parsed = ParseResult()
        for line in lines:
            parser.invocation_log_line(line, parsed)
        entries, _ = engine.entries(parsed.records)
        chunks = plan_chunks(entries)
        elapsed = time.perf_counter() - start
        assert len(parsed.records) == n and sum(len(c.entries) for c in chunks) == n
        rates.append(n / elapsed)
    return statistics.median(rates)


def dynamodb_calls(n: int = 1000) -> dict[str, Any]:
    import boto3

    from guardrail.service.engine import Engine
    from guardrail.service.sources import RecordParser
    from guardrail.tools.embedded_aws import embedded_aws

    calls: dict[str, int] = {}

    def count(event_name: str, **_: Any) -> None:
        op = event_name.rsplit(".", 1)[-1]
        calls[op] = calls.get(op, 0) + 1

    with embedded_aws():
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        create_table(ddb, "bench")
        engine = Engine(load_settings(table_name="bench", budgets=BUDGETS), dynamodb=ddb, now=lambda: NOW)
        parsed = ParseResult()
        parser = RecordParser()
        for line in log_lines(n, seed=11):
            parser.invocation_log_line(line, parsed)
        # One tenant per batch -> 3 counters (global, app:chat-api, tenant:acme).
        records = [replace(r, metadata={"app": "chat-api", "tenant": "acme"}) for r in parsed.records]
        ddb.meta.events.register("before-call.dynamodb.*", count)
        result = engine.ingest(records)
        assert len(result.recorded) == n, len(result.recorded)
    return {
        "calls": calls,
        "scopes": sorted(result.totals),
        "ledger_writes": result.write_calls,
        "transitions": len(result.transitions),
    }


def correction_calls(n: int = 1000) -> dict[str, int]:
    """Ledger write calls when 1,000 logs arrive after 1,000 partial client copies (every copy corrected),
    and when the same logs are redelivered (every copy a duplicate: nothing to correct)."""
    import boto3

    from guardrail.service.engine import Engine
    from guardrail.tools.embedded_aws import embedded_aws

    with embedded_aws():
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        create_table(ddb, "bench")
        engine = Engine(load_settings(table_name="bench", budgets=BUDGETS), dynamodb=ddb, now=lambda: NOW)
        parsed = ParseResult()
        for line in log_lines(n, seed=13):
            RecordParser().invocation_log_line(line, parsed)
        logs = [replace(r, metadata={"app": "chat-api", "tenant": "acme"}) for r in parsed.records]
        client = [replace(r, output_tokens=1, source="event", partial=True) for r in logs]
        first = engine.ingest(client)
        corrected = engine.ingest(logs)
        again = engine.ingest(logs)
        assert len(corrected.corrected) == n and len(again.duplicates) == n
    return {"client": first.write_calls, "corrected": corrected.write_calls, "redelivered": again.write_calls}


def main() -> None:
    rate = throughput()
    print(f"parse + price + aggregate, one core: {rate:,.0f} records/s (target >= 20,000)")
    info = dynamodb_calls()
    calls = info["calls"]
    print(
        f"1,000-record batch over {len(info['scopes'])} scopes {info['scopes']}: "
        f"{info['ledger_writes']} ledger write calls (TransactWriteItems, target <= 12); "
        f"{info['transitions']} flag transitions (1 TransactWriteItems each); all DynamoDB calls: {calls}"
    )
    fixes = correction_calls()
    print(
        f"1,000 invocation logs after 1,000 partial client copies: {fixes['corrected']} ledger write calls "
        f"(client copies took {fixes['client']}); the same logs redelivered: {fixes['redelivered']}"
    )


if __name__ == "__main__":
    main()
