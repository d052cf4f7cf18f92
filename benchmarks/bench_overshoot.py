"""Overshoot past shutdown: 64 concurrent callers, $0.05 per request, shutdown at $25.

Each caller loops on `converse` through guarded clients until it gets `GuardrailShutdown`. Bedrock is a
stand-in that sleeps 20-80 ms per call (the GIL is released, as in real network I/O) and reports usage
worth exactly $0.05 (global Claude Haiku 4.5: 10,000 input + 6,000 output + 8,000 cache-write tokens).
The ledger is the real engine on moto DynamoDB (serialised with a lock, as real DynamoDB serialises
updates of one item). Reported per scenario: spend recorded in the ledger past $25 (target: at most 2% of
the threshold) and requests admitted after their process had seen the crossing (target: 0).

Scenarios: one process with 64 threads, with direct ledger writes and with EventBridge events (ingested
by a simulated usage handler 0.5 s later). `run(processes, threads, report)` also simulates several
processes sharing one ledger; there each process learns the others' spend only from its own ledger
writes and flag reads, so the bound depends on store latency (moto under this lock is not representative).

Cross-process scenarios (benchmarks/overshoot_processes.py): real OS processes, 8 x 8 threads and 32 x 2
threads, each with its own guarded client, sharing one DynamoDB (moto's ThreadedMotoServer on 127.0.0.1),
budget leases off then on, each run in fresh processes. Reported beside each other: spend past $25, the
DynamoDB calls per 1,000 requests (all of them, and the lease calls among them), time, and memory: the peak of
PSS summed over every process of the run (parent, fork server, children), sampled every 0.25 s.

Run: python benchmarks/bench_overshoot.py  (--processes-only: only the cross-process scenarios)
"""

from __future__ import annotations

import json
import os
import threading
import time
from decimal import Decimal
from typing import Any

os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")

import boto3

# The same model, usage and Bedrock stand-in as the cross-process children (one place for the scenario).
from overshoot_processes import MODEL, THRESHOLD, StubBedrock

from guardrail import GuardrailShutdown
from guardrail.client import ClientOptions, GuardedBedrockClient
from guardrail.core.config import Settings, load_settings
from guardrail.service.client_sink import ledger_writer
from guardrail.service.engine import Engine
from guardrail.store.table import create_table

TABLE = "guardrail-bench"
COST = Decimal("0.05")
REQUEST: dict[str, Any] = {"modelId": MODEL, "messages": [{"role": "user", "content": [{"text": "go on"}]}]}


class Serialised:
    """A boto3 client whose calls run one at a time (moto's DynamoDB is not atomic across threads)."""

    def __init__(self, client: Any, lock: threading.Lock) -> None:
        self._client = client
        self._lock = lock
        self.exceptions = client.exceptions
        self.meta = client.meta

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._client, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                return method(*args, **kwargs)

        return call


class DelayedUsageHandler:
    """EventBridge -> usage handler: one consumer ingests, with the engine, every batch of events that is
    at least `lag` seconds old (one Lambda invocation at a time)."""

    def __init__(self, engine: Engine, lag: float) -> None:
        self.engine = engine
        self.lag = lag
        self.queue: list[tuple[float, dict[str, Any]]] = []
        self.cond = threading.Condition()
        self.stopping = False
        self.thread = threading.Thread(target=self._consume, daemon=True)
        self.thread.start()

    def put_events(self, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        due = time.monotonic() + self.lag
        with self.cond:
            for e in Entries:
                self.queue.append((due, {"detail-type": e["DetailType"], "detail": json.loads(e["Detail"])}))
            self.cond.notify()
        return {"FailedEntryCount": 0, "Entries": [{"EventId": str(i)} for i in range(len(Entries))]}

    def _consume(self) -> None:
        while True:
            with self.cond:
                while not self.queue and not self.stopping:
                    self.cond.wait()
                if not self.queue:
                    return
                wait = self.queue[0][0] - time.monotonic()
                if wait > 0:
                    self.cond.wait(wait)
                    continue
                now = time.monotonic()
                batch = [ev for due, ev in self.queue if due <= now]
                self.queue = [(due, ev) for due, ev in self.queue if due > now]
            self.engine.ingest_events(batch)

    def drain(self) -> None:
        with self.cond:
            self.stopping = True
            self.cond.notify()
        self.thread.join()


def run(processes: int, threads_per_process: int, report: str) -> dict[str, Any]:
    # Imported here: the cross-process children import this script again (multiprocessing), without moto.
    from moto import mock_aws

    with mock_aws():
        lock = threading.Lock()
        raw = boto3.client("dynamodb", region_name="us-east-1")
        create_table(raw, TABLE)
        ddb = Serialised(raw, lock)
        settings: Settings = load_settings(table_name=TABLE, thresholds="alert=5,throttle=10,shutdown=25")
        ingest_engine = Engine(settings, dynamodb=ddb)  # type: ignore[arg-type]
        handler = DelayedUsageHandler(ingest_engine, lag=0.5)
        bedrock = StubBedrock()
        clients = []
        for _ in range(processes):
            client = GuardedBedrockClient(
                bedrock,  # type: ignore[arg-type]
                settings=settings,
                options=ClientOptions(report=report, flag_ttl=1.0),  # type: ignore[arg-type]
                dynamodb=ddb,  # type: ignore[arg-type]
                events=handler,  # type: ignore[arg-type]
                ledger=ledger_writer(settings, dynamodb=ddb) if report == "ledger" else None,  # type: ignore[arg-type]
            )
            clients.append(client)

        refused = [0]
        done_lock = threading.Lock()

        def caller(client: GuardedBedrockClient) -> None:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                try:
                    client.converse(**REQUEST)  # type: ignore[arg-type]
                except GuardrailShutdown:
                    with done_lock:
                        refused[0] += 1
                    return

        started = time.monotonic()
        workers = [
            threading.Thread(target=caller, args=(client,)) for client in clients for _ in range(threads_per_process)
        ]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        elapsed = time.monotonic() - started
        for client in clients:
            client.flush(30)
        handler.drain()
        spend = ingest_engine.scope_totals("global").spend

        # Counted under each client's accounting lock: a request admitted while one of its scopes' books
        # already held the crossing (GuardedBedrockClient admits only through LocalSpend.admit_locked then).
        after_crossing = sum(client.spend.admitted_after_crossing for client in clients)
        return {
            "requests": bedrock.calls,
            "spend": spend,
            "over": spend - THRESHOLD,
            "after_crossing": after_crossing,
            "refused_callers": refused[0],
            "elapsed": elapsed,
        }


def main() -> None:
    import sys

    started = time.monotonic()
    if "--processes-only" not in sys.argv:
        in_one_process()
    across_processes()
    print(f"benchmark wall time: {time.monotonic() - started:.0f} s (target < 300 s)")


def in_one_process() -> None:
    print(f"overshoot past shutdown: ${THRESHOLD} threshold, ${COST} per request, 64 concurrent callers")
    scenarios = [
        ("1 process x 64 threads, direct ledger writes", 1, 64, "ledger"),
        ("1 process x 64 threads, EventBridge events (0.5 s ingest lag)", 1, 64, "events"),
    ]
    for name, processes, threads, report in scenarios:
        r = run(processes, threads, report)
        pct = r["over"] / THRESHOLD * 100
        print(f"{name}:")
        print(
            f"  {r['requests']} requests, ledger total ${r['spend']}, past the threshold ${r['over']} "
            f"({pct:.2f}% of it; target <= 2%), requests admitted after the process saw the crossing: "
            f"{r['after_crossing']} (target 0), callers stopped by GuardrailShutdown: {r['refused_callers']}/64, "
            f"{r['elapsed']:.1f} s"
        )


def across_processes() -> None:
    """Real OS processes sharing one DynamoDB: leases off, then on, from the same run (fresh processes each)."""
    import overshoot_processes as op

    print(f"across processes: ${THRESHOLD} threshold, ${COST} per request, 64 callers, one DynamoDB (moto server)")
    server = op.Server()
    try:
        ctx = op.processes_context(server)
        peak = 0.0
        for processes, threads in ((8, 8), (32, 2)):
            figures = {}
            for leases in (False, True):
                name = f"{processes}x{threads}-{'on' if leases else 'off'}"
                figures[leases] = op.run(server, ctx, name, processes, threads, leases)
                op.drop_table(server, name)
            print(f"{processes} processes x {threads} threads:")
            for leases, r in figures.items():
                verdict = "" if not leases else (" meets <= 2%" if r["pct"] <= 2 else " MISSES 2%")
                print(
                    f"  leases {'on ' if leases else 'off'}: {r['requests']} requests, ledger ${r['spend']}, past the "
                    f"threshold ${r['over']} ({r['pct']:.2f}%{verdict}); DynamoDB calls per 1,000 requests: "
                    f"{r['dynamodb_per_1000']:.0f} (lease calls {r['lease_per_1000']:.0f}); {r['elapsed']:.1f} s"
                    f"{' TIMED OUT' if r['timed_out'] else ''}; memory {r['run_pss_mb']:.0f} MB at most (PSS summed "
                    f"over {r['run_processes']} processes: parent, fork server, children; their RSS summed "
                    f"{r['run_rss_mb']:.0f} MB), children peak RSS {r['rss_max_mb']:.0f} MB each"
                )
                peak = max(peak, r["run_pss_mb"])
        print(
            f"  memory of the cross-process runs: {peak:.0f} MB at most (target < 2048 MB: "
            f"{'meets' if peak < 2048 else 'MISSES'}); parent (moto server) peak RSS {op.peak_rss_mb():.0f} MB"
        )
    finally:
        server.stop()


if __name__ == "__main__":
    main()
