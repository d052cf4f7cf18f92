"""Load: concurrent ingest with overlapping duplicate batches keeps totals exact; a long replay runs in
bounded memory; handler imports stay light (cold start)."""

from __future__ import annotations

import gc
import json
import random
import subprocess
import sys
import threading
import tracemalloc
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import handlers.usage
from guardrail.core.config import load_settings
from guardrail.core.models import Level, PricedRecord, UsageRecord
from guardrail.core.pricing import Pricer
from guardrail.service.engine import Engine
from guardrail.service.runtime import default_runtime
from guardrail.service.sources import ParseResult, RecordParser
from guardrail.store.ledger import LedgerEntry, plan_chunks
from tests.support.common import TABLE, Clock, FakeLambdaContext
from tests.support.factories import log_line, logs_event, record

ROOT = Path(__file__).resolve().parents[1]
REPO = ROOT.parent  # the checkout: a child run there imports this code, not an installed copy


def test_concurrent_handler_invocations_with_overlapping_duplicate_batches_keep_totals_exact(
    ddb: Any, serialised_dynamodb: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 400 unique requests ($0.066 each, $26.40): 8 invocations of 150 records each, every record
    # delivered three times (invocation log, client event and a redelivery), in shuffled overlapping slices.
    monkeypatch.setenv("GUARDRAIL_TABLE_NAME", TABLE)
    monkeypatch.setenv("GUARDRAIL_BUDGETS", json.dumps([{"scope": "global"}, {"scope": "app:*"}]))
    default_runtime.cache_clear()
    now = datetime.now(UTC)
    recs = [record(f"req-{i}", input_tokens=20_000, output_tokens=0, at=now, app=f"app-{i % 3}") for i in range(400)]
    copies = recs * 3
    random.Random(7).shuffle(copies)
    events = [logs_event([log_line(r) for r in copies[k : k + 150]]) for k in range(0, len(copies), 150)]
    results: list[dict[str, Any]] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(events))

    def invoke(event: dict[str, Any]) -> None:
        try:
            barrier.wait()
            results.append(handlers.usage.handler(event, FakeLambdaContext()))  # type: ignore[arg-type]
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=invoke, args=(e,)) for e in events]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    default_runtime.cache_clear()
    assert not errors
    assert sum(r["recorded"] for r in results) == 400
    assert all(r["quarantined"] == [] for r in results)
    engine = Engine(
        load_settings(table_name=TABLE, budgets=json.dumps([{"scope": "global"}, {"scope": "app:*"}])), dynamodb=ddb
    )
    pricer = Pricer(ceiling=load_settings().ceiling_rate)
    exact = sum((pricer.price(r).cost for r in recs), Decimal(0))
    totals = engine.scope_totals("global")
    assert totals.requests == 400 and totals.spend == exact == Decimal("26.4")
    for app in range(3):
        assert engine.scope_totals(f"app:app-{app}").requests == len(range(app, 400, 3))
    crossings = []
    for entry in engine.flags.history("global"):
        lo, hi = Level.parse(entry.before["level"]), Level.parse(entry.after["level"])
        crossings.extend(lvl for lvl in (Level.ALERT, Level.THROTTLE, Level.SHUTDOWN) if lo < lvl <= hi)
    assert sorted(crossings) == [Level.ALERT, Level.THROTTLE, Level.SHUTDOWN]  # each level crossed once


# -- bounded memory ------------------------------------------------------------------------------------

BATCH = 1_000


def lines(start: int, n: int) -> list[str]:
    at = datetime(2026, 11, 22, 10, 41, tzinfo=UTC)
    return [
        log_line(record(f"replay-{i}", input_tokens=1000 + i % 97, output_tokens=i % 13, at=at, app=f"a{i % 5}"))
        for i in range(start, start + n)
    ]


def pipeline(total: int) -> tuple[list[int], int, int]:
    """Parse + price + plan `total` records, 1,000 per batch as a log subscription delivers them.

    The first and the last batch run under tracemalloc (their peak is one batch's working set); the
    whole run is bracketed by the interpreter's count of live memory blocks (what the run kept).
    Returns (traced peaks, live blocks gained, records planned).
    """
    settings = load_settings(table_name=TABLE, budgets='[{"scope": "global"}, {"scope": "app:*"}]')
    now = datetime(2026, 11, 22, 10, 45, tzinfo=UTC)
    engine = Engine(settings, dynamodb=None, now=lambda: now)  # type: ignore[arg-type]
    parser = RecordParser()
    planned = 0
    peaks: list[int] = []
    last = total // BATCH - 1

    def one(b: int) -> int:
        result = ParseResult()
        for line in lines(b * BATCH, BATCH):
            parser.invocation_log_line(line, result)
        entries, _ = engine.entries(result.records)
        return sum(len(c.entries) for c in plan_chunks(entries))

    planned += one(0)  # warm-up: pricing tables and window caches load once per process
    gc.collect()
    blocks = sys.getallocatedblocks()
    for b in range(1, total // BATCH):
        if b in (1, last):
            tracemalloc.start()
            planned += one(b)
            peaks.append(tracemalloc.get_traced_memory()[1])
            tracemalloc.stop()
        else:
            planned += one(b)
    gc.collect()
    return peaks, sys.getallocatedblocks() - blocks, planned


def test_pure_pipeline_replay_of_100k_records_runs_in_bounded_memory() -> None:
    small_peaks, _, _ = pipeline(10_000)  # also warms up what a process loads once
    (first, last), gained, planned = pipeline(100_000)
    assert planned == 100_000
    assert last < max(small_peaks) * 1.2 + 64 * 1024  # 100k records: the peak of 10k
    # The 100th batch needs no more memory than the 2nd: nothing accumulates per record ...
    assert last < first * 1.2 + 64 * 1024, (first, last)
    assert last < 16 * 1024 * 1024
    # ... and after 100,000 records the process holds (almost) nothing more than after 1,000.
    # Keeping even one object per record would be 100,000+ blocks; allow caches' noise.
    assert gained < 10_000, gained


def test_ingest_path_on_moto_holds_no_records_between_batches(ddb: Any, clock: Clock) -> None:
    # moto's table (like DynamoDB) grows with the data; the engine must not. Count live objects of our
    # own record types after each 1,000-record ingest.
    engine = Engine(load_settings(table_name=TABLE), dynamodb=ddb, now=clock)
    kinds = (UsageRecord, PricedRecord, LedgerEntry)
    alive: list[int] = []
    for b in range(3):
        result = engine.ingest_events([logs_event(lines(b * BATCH, BATCH))])
        assert len(result.recorded) == BATCH
        del result
        gc.collect()
        alive.append(sum(1 for o in gc.get_objects() if isinstance(o, kinds)))
    assert engine.scope_totals("global").requests == 3 * BATCH
    assert alive[-1] <= alive[0] < 50, alive


# -- cold start ----------------------------------------------------------------------------------------


def test_importing_a_handler_does_not_load_the_xray_sdk_or_genai_prices() -> None:
    code = (
        "import sys, handlers.usage, handlers.alarm, handlers.reset, handlers.schedule;"
        "print(sorted(m for m in ('aws_xray_sdk', 'genai_prices', 'moto') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True, env={"PATH": ""}
    )
    assert out.stdout.strip() == "[]"


def test_pricing_from_genai_prices_skips_its_price_updater_and_leaves_the_package_whole() -> None:
    # The updater imports httpx (and asyncio, which pydantic-settings imports anyway); the guardrail prices
    # from the bundled snapshot only.
    code = (
        "import sys; from guardrail.core.pricing import rates_from_genai_prices as r;"
        "rates = r('us.anthropic.claude-sonnet-4-5-20250929-v1:0');"
        "print(rates.source, rates.base.input, 'httpx' in sys.modules, 'genai_prices.update_prices' in sys.modules);"
        "import genai_prices; print(callable(genai_prices.calc_price), genai_prices.types.Usage is not None)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True, env={"PATH": ""}
    )
    assert out.stdout.split() == [
        "regional.anthropic.claude-sonnet-4-5-20250929-v1:0",
        "3.3",
        "False",
        "False",
        "True",
        "True",
    ]


def test_in_lambda_the_cold_start_pauses_the_collector_until_the_first_event_is_handled_failed_or_not() -> None:
    code = """
import gc, handlers.alarm
paused = not gc.isenabled()
class Context:
    function_name, memory_limit_in_mb, aws_request_id = "guardrail-alarm", 128, "r"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:guardrail-alarm"
try:
    out = handlers.alarm.handler({"not": "an alarm"}, Context())["changed"]
except Exception as exc:
    out = type(exc).__name__
print(paused, gc.isenabled(), out)
"""
    lambda_env = {"AWS_EXECUTION_ENV": "AWS_Lambda_python3.14", "AWS_DEFAULT_REGION": "us-east-1"}
    cases = (
        ({"AWS_DEFAULT_REGION": "us-east-1"}, "False True False"),  # not in Lambda: never paused
        (lambda_env, "True True False"),
        ({**lambda_env, "GUARDRAIL_WINDOW": "week"}, "True True ConfigError"),  # the first event fails
    )
    for env, expected in cases:
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, env={"PATH": "", **env}
        )
        assert out.stdout.strip().splitlines()[-1] == expected, out.stderr[-2000:]


def test_tracing_patches_only_what_the_functions_call_out_with() -> None:
    # The Tracer's default patches every library the X-Ray SDK knows (more first-event CPU in Lambda).
    code = (
        "from guardrail.service.observability import tracer; tracer.get();"
        "from aws_xray_sdk.core import patcher; print(sorted(patcher._PATCHED_MODULES))"
    )
    env = {"PATH": "", "LAMBDA_TASK_ROOT": "/var/task", "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True, env=env)
    assert out.stdout.strip() == "['botocore', 'httplib']"
