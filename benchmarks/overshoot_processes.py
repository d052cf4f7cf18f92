"""Overshoot across real OS processes: guarded clients in separate interpreters share one DynamoDB.

The parent serves DynamoDB with moto's `ThreadedMotoServer` on 127.0.0.1 (each backend operation under one
lock: real DynamoDB is atomic per item, moto is not across threads), creates a fresh table per run, and
starts `processes` fresh interpreters (`python benchmarks/overshoot_processes.py --child ...`). Each child
builds one guarded client (report="ledger" through the service's usage path, flags read every second,
budget leases on or off), with a Bedrock stand-in that sleeps 20-80 ms and reports usage worth $0.05 and
costs nothing. When every child is ready the parent says go; each of a child's threads calls `converse`
until `GuardrailShutdown`. Children flush their reports, return their leases, print their counts as one
JSON line and exit. The parent reads the ledger's global counter: spend past the $25 threshold.

Bounded: children are killed past `RUN_TIMEOUT` (the figure is then marked). Memory: the run's peak of PSS
summed over the parent, the fork server and the children (sampled every 0.25 s: what the machine holds,
shared pages counted once), and each child's peak RSS.
"""

from __future__ import annotations

import gc
import logging
import os
import random
import resource
import sys
import threading
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
THRESHOLDS = "alert=5,throttle=10,shutdown=25"
THRESHOLD = Decimal(25)
MODEL = "global.anthropic.claude-haiku-4-5-20251001-v1:0"
USAGE = {  # $0.05 on global Claude Haiku 4.5
    "inputTokens": 10_000,
    "outputTokens": 6_000,
    "totalTokens": 24_000,
    "cacheReadInputTokens": 0,
    "cacheWriteInputTokens": 8_000,
}
PRICES = {MODEL: {"input": "1", "output": "5", "cache_read": "0.1", "cache_write": "1.25"}}
READY_TIMEOUT = 150.0  # seconds for every child to import and build its client
RUN_TIMEOUT = 90.0  # seconds from go to the last child's exit
CALLER = "arn:aws:sts::123456789012:assumed-role/bench/bench"  # given: no STS lookup


# -- the child --------------------------------------------------------------------------------------


class StubBedrock:
    """Bedrock stand-in, here and in bench_overshoot.py's in-process cases: 20-80 ms per call (the GIL is
    released, as in network I/O), $0.05 of usage."""

    meta = type("Meta", (), {"region_name": "us-east-1"})()

    def __init__(self) -> None:
        self.calls = 0
        self._lock = threading.Lock()

    def converse(self, **_: Any) -> dict[str, Any]:
        with self._lock:
            self.calls += 1
            rid = f"req-{os.getpid()}-{self.calls}-{random.getrandbits(32):x}"
        time.sleep(random.uniform(0.02, 0.08))
        return {
            "output": {"message": {"role": "assistant", "content": [{"text": "..."}]}},
            "stopReason": "end_turn",
            "usage": dict(USAGE),
            "metrics": {"latencyMs": 50},
            "ResponseMetadata": {"RequestId": rid, "HTTPStatusCode": 200, "HTTPHeaders": {}},
        }


def peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM: getrusage's ru_maxrss would include the parent's at fork)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(table: str, threads: int, leases: bool, divisor: int, ready: Any, go: Any, results: Any) -> None:
    """One process of a run: build a guarded client, wait for go, spend until shut down, report counts."""
    try:
        results.put(_child(table, threads, leases, divisor, ready, go))
    except BaseException as exc:
        ready.put(f"failed: {exc!r}")
        results.put({"error": repr(exc)})
        raise


def _child(table: str, threads: int, leases: bool, divisor: int, ready: Any, go: Any) -> dict[str, Any]:
    if "overshoot_preload" not in sys.modules:
        raise RuntimeError("the fork server did not preload overshoot_preload (children would not share it)")
    import boto3
    from botocore.config import Config

    from guardrail import GuardrailShutdown
    from guardrail.client import ClientOptions, GuardedBedrockClient
    from guardrail.core.config import load_settings
    from guardrail.service.client_sink import ledger_writer

    logging.getLogger("guardrail").setLevel(logging.ERROR)  # a refusal per caller is the expected end
    config = Config(max_pool_connections=threads + 8, retries={"max_attempts": 10, "mode": "standard"})
    ddb = boto3.client("dynamodb", region_name="us-east-1", config=config)
    calls: Counter[str] = Counter()

    def count(event_name: str, **_: Any) -> None:
        calls[event_name.rsplit(".", 1)[-1]] += 1

    ddb.meta.events.register("before-call.dynamodb", count)
    # Haiku 4.5's list prices as an override: the same $0.05, without loading genai-prices in 32 processes.
    settings = load_settings(table_name=table, thresholds=THRESHOLDS, price_overrides=PRICES)
    bedrock = StubBedrock()
    client = GuardedBedrockClient(
        bedrock,  # type: ignore[arg-type]
        caller=CALLER,
        settings=settings,
        options=ClientOptions(report="ledger", flag_ttl=1.0, leases=leases, lease_divisor=divisor),
        dynamodb=ddb,
        ledger=ledger_writer(settings, dynamodb=ddb),
    )
    ready_rss = peak_rss_mb()
    ready.put("ready")
    go.wait()

    def caller() -> None:
        deadline = time.monotonic() + RUN_TIMEOUT
        while time.monotonic() < deadline:
            try:
                client.converse(modelId=MODEL, messages=[{"role": "user", "content": [{"text": "go on"}]}])
            except GuardrailShutdown:
                return

    workers = [threading.Thread(target=caller) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    client.flush(30)
    client.close()
    return {
        "requests": bedrock.calls,
        "dynamodb_calls": sum(calls.values()),
        "by_operation": dict(calls),
        "lease_calls": client.leases.store.calls if client.leases is not None else 0,  # type: ignore[attr-defined]
        "ready_rss_mb": ready_rss,
        "max_rss_mb": peak_rss_mb(),
        "pss_mb": pss_mb(),
    }


def pss_mb() -> float:
    """This process's proportional share of resident memory (shared pages divided among their users)."""
    try:
        for line in Path("/proc/self/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


# -- the parent -------------------------------------------------------------------------------------


class Server:
    """moto's ThreadedMotoServer on 127.0.0.1, every DynamoDB backend operation under one lock."""

    def __init__(self) -> None:
        from moto.dynamodb.models import DynamoDBBackend
        from moto.server import ThreadedMotoServer

        from guardrail.tools.embedded_aws import speed_up_moto_transactions

        speed_up_moto_transactions()
        _back_up_only_named_items()
        lock = threading.RLock()
        for name in ("transact_write_items", "update_item", "put_item", "get_item", "batch_get_item", "query", "scan"):
            original = getattr(DynamoDBBackend, name)

            def locked(self: Any, *args: Any, __original: Any = original, **kwargs: Any) -> Any:
                with lock:
                    return __original(self, *args, **kwargs)

            setattr(DynamoDBBackend, name, locked)
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.server.start()
        host, port = self.server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"

    def stop(self) -> None:
        self.server.stop()


def _back_up_only_named_items() -> None:
    """moto backs up each table a transaction writes with a deep copy of the whole table (to roll back on a
    cancellation): with thousands of request items that copy is most of the server's memory. Here the
    backup copies the table's index of items and deep-copies only the items the transaction names (the only
    ones it can change). Call under the server lock (transactions one at a time)."""
    import copy
    from collections import defaultdict

    from moto.dynamodb import models
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.models.dynamo_type import DynamoType
    from moto.dynamodb.models.table import Table

    running: list[list[dict[str, Any]]] = []
    base = models.copy  # the module, or guardrail's copy-once stand-in

    def backup(table: Table, transact_items: list[dict[str, Any]]) -> Table:
        saved = copy.copy(table)
        saved.items = defaultdict(dict, {h: dict(r) if isinstance(r, dict) else r for h, r in table.items.items()})
        for entry in transact_items:
            op = next(iter(entry.values()))
            if op.get("TableName") != table.name:
                continue
            key = op.get("Key") or op.get("Item") or {}
            pk, sk = DynamoType(key["pk"]), DynamoType(key["sk"])
            held = table.items.get(pk, {}).get(sk)
            if held is not None:
                saved.items[pk][sk] = copy.deepcopy(held)
        return saved

    class Copies:
        def __getattr__(self, name: str) -> Any:
            return getattr(base, name)

        @staticmethod
        def deepcopy(obj: Any, memo: Any = None) -> Any:
            if isinstance(obj, Table) and running:
                return backup(obj, running[-1])
            return base.deepcopy(obj, memo)

    models.copy = Copies()  # type: ignore[attr-defined,assignment]
    # moto remembers every model instance it ever made (for its own resets), backups and the items copied
    # into them included: a server that never resets need not, or it would keep every backup alive.
    from moto.core.model_instances import model_data

    class Untracked(list[Any]):
        def append(self, _: Any) -> None:
            pass

    for classes in model_data.values():
        for cls in classes.values():
            if cls.__module__.startswith("moto.dynamodb"):
                cls.instances_tracked = Untracked()
    original = DynamoDBBackend.transact_write_items

    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> Any:
        running.append(transact_items)
        try:
            return original(self, transact_items)
        finally:
            running.pop()

    DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]


def processes_context(server: Server) -> Any:
    """Children fork from a fork server that imported boto3 and the guarded client once (fresh processes
    every run, no import per child); the fork server starts now, with the children's environment."""
    import multiprocessing

    os.environ["AWS_ENDPOINT_URL"] = server.endpoint
    os.environ["MALLOC_ARENA_MAX"] = "2"  # glibc's per-thread arenas would hold memory the children never reuse
    for key in [k for k in os.environ if k.startswith("GUARDRAIL_")]:
        del os.environ[key]
    here = str(Path(__file__).resolve().parent)
    sys.path.insert(0, here)
    # The fork server imports its preload with the interpreter's own path (Python 3.11 ignores the parent's
    # sys.path there) and passes over an ImportError in silence: without this, it preloaded nothing of ours,
    # or guardrail from wherever the environment installed it.
    os.environ["PYTHONPATH"] = os.pathsep.join([here, str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["overshoot_preload"])
    return ctx


class MemorySampler:
    """The whole run's memory, as the machine sees it: PSS (each shared page divided among the processes
    sharing it) summed over this process and every descendant (the fork server and the children), sampled
    every `interval` seconds; the peak sum, and the summed RSS at that moment (shared pages counted once per
    process: more than the machine holds)."""

    def __init__(self, interval: float = 0.25) -> None:
        self.interval = interval
        self.peak_pss_mb = 0.0
        self.rss_at_peak_mb = 0.0
        self.processes_at_peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="memory-sampler", daemon=True)

    def start(self) -> None:
        self.sample()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def sample(self) -> None:
        pss = rss = 0.0
        pids = _descendants(os.getpid())
        for pid in pids:
            p, r = _pss_rss_mb(pid)
            pss += p
            rss += r
        if pss > self.peak_pss_mb:
            self.peak_pss_mb, self.rss_at_peak_mb, self.processes_at_peak = pss, rss, len(pids)


def _descendants(pid: int) -> list[int]:
    """`pid` and every process below it (from /proc/<pid>/task/<tid>/children)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        try:
            for task in Path(f"/proc/{current}/task").iterdir():
                todo.extend(int(c) for c in (task / "children").read_text().split())
        except OSError:
            continue  # it exited meanwhile
    return found


def _pss_rss_mb(pid: int) -> tuple[float, float]:
    pss = rss = 0.0
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                pss = int(line.split()[1]) / 1024
            elif line.startswith("Rss:"):
                rss = int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return pss, rss


def run(
    server: Server, ctx: Any, name: str, processes: int, threads: int, leases: bool, divisor: int = 16
) -> dict[str, Any]:
    """One run in fresh processes against a fresh table of `server`."""
    import queue

    import boto3

    from guardrail.store.table import create_table

    table = f"overshoot-{name}"
    ddb = boto3.client("dynamodb", region_name="us-east-1", endpoint_url=server.endpoint)
    create_table(ddb, table)
    ready, results, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    children = [
        ctx.Process(target=child, args=(table, threads, leases, divisor, ready, go, results), daemon=True)
        for _ in range(processes)
    ]
    out: list[dict[str, Any]] = []
    timed_out = False
    sampler = MemorySampler()
    sampler.start()
    try:
        for c in children:
            c.start()
        deadline = time.monotonic() + READY_TIMEOUT
        for _ in children:
            message = ready.get(timeout=max(0.1, deadline - time.monotonic()))
            if message != "ready":
                raise RuntimeError(f"a child failed: {message}")
        started = time.monotonic()
        go.set()
        deadline = started + RUN_TIMEOUT + 40
        for _ in children:
            try:
                out.append(results.get(timeout=max(0.1, deadline - time.monotonic())))
            except queue.Empty:
                timed_out = True
                break
        elapsed = time.monotonic() - started
        for c in children:
            c.join(max(0.1, deadline - time.monotonic()))
    finally:
        for c in children:
            if c.is_alive():
                c.kill()
                c.join()
        sampler.stop()
    errors = [r["error"] for r in out if "error" in r]
    if errors or len(out) != processes:
        raise RuntimeError(f"{processes - len(out) + len(errors)} children gave no result: {errors[:3]}")
    spend = _global_spend(ddb, table)
    requests = sum(r["requests"] for r in out)
    return {
        "processes": processes,
        "threads": threads,
        "leases": leases,
        "requests": requests,
        "spend": spend,
        "over": spend - THRESHOLD,
        "pct": (spend - THRESHOLD) / THRESHOLD * 100,
        "dynamodb_per_1000": 1000 * sum(r["dynamodb_calls"] for r in out) / max(requests, 1),
        "lease_per_1000": 1000 * sum(r["lease_calls"] for r in out) / max(requests, 1),
        "rss_sum_mb": sum(r["max_rss_mb"] for r in out),
        "rss_max_mb": max(r["max_rss_mb"] for r in out),
        "pss_sum_mb": sum(r["pss_mb"] for r in out),
        "run_pss_mb": sampler.peak_pss_mb,
        "run_rss_mb": sampler.rss_at_peak_mb,
        "run_processes": sampler.processes_at_peak,
        "elapsed": elapsed,
        "timed_out": timed_out,
    }


def drop_table(server: Server, name: str) -> None:
    """Free the server's memory between runs (moto holds every table, and copies it per transaction)."""
    import boto3

    boto3.client("dynamodb", region_name="us-east-1", endpoint_url=server.endpoint).delete_table(
        TableName=f"overshoot-{name}"
    )
    gc.collect()


def _global_spend(ddb: Any, table: str) -> Decimal:
    """The global counter of the day window (the only day window a run spans, or the sum if two)."""
    total = Decimal(0)
    pages = ddb.get_paginator("scan").paginate(
        TableName=table,
        FilterExpression="pk = :pk AND begins_with(sk, :sk)",
        ExpressionAttributeValues={":pk": {"S": "SCOPE#global"}, ":sk": {"S": "WINDOW#day#"}},
        ConsistentRead=True,
    )
    for page in pages:
        for item in page["Items"]:
            total += Decimal(item.get("spend_usd", {"N": "0"})["N"])
    return total
