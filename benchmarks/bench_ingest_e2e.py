"""Ingest end to end: what the usage function pays per record, in process CPU time.

The whole path a user pays for: the usage handler (Powertools decorators included) on a CloudWatch Logs
subscription event (gzip + base64), parsing, pricing, the ledger's TransactWriteItems and the consistent
read, with botocore's full request pipeline (parameter validation, serialisation, signing, response
parsing). Only the HTTP send is replaced: a `before-send` hook answers each DynamoDB call with an empty
success, so no moto cost is counted and no backend decides anything (no transition fires).

Two shapes, each the median of 5 runs with min and max:
- one subscription batch: 1,000 records within 60 s, 3 scopes (global, app, tenant). Goal >= 20,000/s.
- spread: 1,000 records over 24 h, 10 scopes (global, app, tenant, caller and 6 more metadata keys).
  Goal: within 2x of the first shape's goal (>= 10,000/s).
The DynamoDB transactions per batch are printed beside the floor: ceil((requests + distinct items the batch
adds to: scope-window counters, 5-minute buckets, spend-by-model/app/caller items) / 100), what one write per
item costs in 100-item transactions. Goal for the spread batch: within 10% of it.

Run: python benchmarks/bench_ingest_e2e.py
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import json
import math
import os
import random
import resource
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
os.environ.setdefault("AWS_LAMBDA_FUNCTION_NAME", "guardrail-usage")  # the clients Lambda builds
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "BedrockGuardrail")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")

NOW = datetime(2026, 11, 22, 23, 59, 0, tzinfo=UTC)
MODELS = [
    "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
    "global.anthropic.claude-haiku-4-5-20251001-v1:0",
    "anthropic.claude-3-haiku-20240307-v1:0",
    "us.anthropic.claude-opus-4-1-20250805-v1:0",
]
EXTRA_KEYS = ("team", "feature", "env", "region_group", "customer", "workflow")
RUNS = 5
GOAL_BATCH = 20_000
GOAL_SPREAD = GOAL_BATCH / 2


def budgets(spread: bool) -> str:
    scopes = ["global", "app:*", "tenant:*"]
    if spread:
        scopes += ["caller:*", *(f"{k}:*" for k in EXTRA_KEYS)]
    return json.dumps([{"scope": s, "thresholds": "alert=100000,throttle=200000,shutdown=300000"} for s in scopes])


def log_event(n: int, *, spread: bool, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    events = []
    for i in range(n):
        at = NOW - timedelta(seconds=rng.randint(0, 86_399 if spread else 60))
        metadata = {"app": rng.choice(["chat-api", "search", "agent"]), "tenant": rng.choice(["acme", "globex"])}
        if spread:
            metadata.update({k: f"{k}-{rng.randint(1, 3)}" for k in EXTRA_KEYS})
        record = {
            "schemaType": "ModelInvocationLog",
            "schemaVersion": "1.0",
            "timestamp": at.isoformat(),
            "accountId": "123456789012",
            "identity": {"arn": f"arn:aws:sts::123456789012:assumed-role/app-role/worker-{rng.randint(1, 3)}"},
            "region": "us-east-1",
            "requestId": f"e2e-{seed}-{i}",
            "operation": "Converse",
            "modelId": rng.choice(MODELS),
            "input": {"inputTokenCount": rng.randint(1, 20_000), "cacheReadInputTokenCount": rng.choice([0, 8000])},
            "output": {"outputTokenCount": rng.randint(1, 2000)},
            "requestMetadata": metadata,
        }
        events.append({"id": str(i), "timestamp": int(at.timestamp() * 1000), "message": json.dumps(record)})
    payload = {
        "messageType": "DATA_MESSAGE",
        "owner": "123456789012",
        "logGroup": "/aws/bedrock/modelinvocations",
        "logStream": "aws/bedrock/modelinvocations",
        "subscriptionFilters": ["guardrail"],
        "logEvents": events,
    }
    return {"awslogs": {"data": base64.b64encode(gzip.compress(json.dumps(payload).encode())).decode()}}


class NoBackend:
    """Answers every DynamoDB call at the HTTP layer with an empty success; counts the calls."""

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}

    def __call__(self, request: Any, **_: Any) -> Any:
        from botocore.awsrequest import AWSResponse

        op = request.headers.get("X-Amz-Target", b"")
        op = (op.decode() if isinstance(op, bytes) else op).rsplit(".", 1)[-1]
        self.calls[op] = self.calls.get(op, 0) + 1
        body = b'{"Responses": {}, "UnprocessedKeys": {}}' if op == "BatchGetItem" else b"{}"
        return AWSResponse(request.url, 200, {"Content-Type": "application/x-amz-json-1.0"}, _Raw(body))


class _Raw:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_: Any) -> Any:
        yield self.body


class Context:
    function_name = "guardrail-usage"
    function_version = "$LATEST"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:guardrail-usage"
    aws_request_id = "bench"


def run(spread: bool) -> tuple[list[float], dict[str, int], int]:
    import handlers.usage
    from guardrail.core.config import load_settings
    from guardrail.service.observability import record_effects
    from guardrail.service.runtime import build, default_runtime

    backend = NoBackend()
    settings = load_settings(table_name="bench", budgets=budgets(spread))
    runtime = build(settings, now=lambda: NOW, on_report=record_effects)  # the DynamoDB client Lambda uses
    runtime.client("dynamodb").meta.events.register("before-send.dynamodb.*", backend)
    default_runtime.install(runtime)
    n = 1000
    rates: list[float] = []
    floor = 0
    # EMF metrics and logs go to stdout as in Lambda (their cost counts); only the terminal is spared them.
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
        handlers.usage.handler(log_event(50, spread=spread, seed=1), Context())  # type: ignore[arg-type]  # warm
        for run_no in range(RUNS):
            event = log_event(n, spread=spread, seed=100 + run_no)
            backend.calls.clear()
            start = time.process_time()
            result = handlers.usage.handler(event, Context())  # type: ignore[arg-type]
            cpu = time.process_time() - start
            assert result["recorded"] == n, result
            rates.append(n / cpu)
            floor = math.ceil((n + _distinct_items(event, settings)) / 100)
    default_runtime.cache_clear()
    return rates, dict(backend.calls), floor


def _distinct_items(event: dict[str, Any], settings: Any) -> int:
    from guardrail.core.models import RATE_WINDOW
    from guardrail.service.engine import Engine
    from guardrail.store.breakdown import breakdown_keys

    engine = Engine(settings, dynamodb=None, now=lambda: NOW)  # type: ignore[arg-type]  # pure compute only
    parsed = engine.parser.events([event])
    entries, _ = engine.entries(parsed.records)
    counters = {c for e in entries for c in e.counters}
    breakdown = {
        (c, k) for e in entries for c in e.counters if c[1].kind != RATE_WINDOW for k in breakdown_keys(e.priced.record)
    }
    return len(counters) + len(breakdown)


def report(label: str, goal: float, rates: list[float], calls: dict[str, int], floor: int, *, floor_goal: bool) -> None:
    median = statistics.median(rates)
    verdict = "meets" if median >= goal else "MISSES"
    print(
        f"{label}: {median:,.0f} records/s per core (CPU), min {min(rates):,.0f}, max {max(rates):,.0f} "
        f"over {len(rates)} runs; goal >= {goal:,.0f}: {verdict}"
    )
    writes = calls.get("TransactWriteItems", 0)
    line = f"  DynamoDB calls per 1,000 records: {calls}; TransactWriteItems {writes}, floor {floor}"
    if floor_goal:
        verdict = "meets" if writes <= floor * 1.1 else "MISSES"
        line += f" ({writes / floor:.2f}x); goal <= 1.10x the floor: {verdict}"
    print(line)


def main() -> None:
    started = time.perf_counter()
    print("usage handler end to end (botocore full pipeline, HTTP send replaced; process CPU time)")
    rates, calls, floor = run(spread=False)
    report("1,000 records in 60 s, 3 scopes", GOAL_BATCH, rates, calls, floor, floor_goal=False)
    rates, calls, floor = run(spread=True)
    report("1,000 records over 24 h, 10 scopes", GOAL_SPREAD, rates, calls, floor, floor_goal=True)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {peak_mb:,.0f} MB, {time.perf_counter() - started:.0f} s (bounds: 2 GB, 5 minutes)")


if __name__ == "__main__":
    main()
