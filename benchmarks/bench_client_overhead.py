"""Added overhead of a guarded Bedrock call vs a bare call, with warm flags.

Two pairs, interleaved call by call so drift hits both sides equally:
- botocore Stubber: a real `bedrock-runtime` client with stubbed responses (botocore's whole request
  pipeline runs, only the HTTP exchange is replaced), bare vs wrapped, both sending the same request;
- canned: a stand-in client that returns a prepared response at once, bare vs wrapped, which isolates
  the guard's own work (flag cache hit, local accounting, usage extraction, exact pricing, queueing the
  usage event for the background reporter).

Target: at most 20 microseconds median added per call. Run: python benchmarks/bench_client_overhead.py
"""

from __future__ import annotations

import gc
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")

import boto3
from botocore.stub import Stubber

from guardrail.client import ClientOptions, GuardedBedrockClient
from guardrail.client.flag_cache import FlagCache
from guardrail.core.config import load_settings
from guardrail.core.models import Flag, ScopeTotals

CALLS = 20_000
MODEL = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
REQUEST: dict[str, Any] = {"modelId": MODEL, "messages": [{"role": "user", "content": [{"text": "hi"}]}]}
RESPONSE: dict[str, Any] = {
    "output": {"message": {"role": "assistant", "content": [{"text": "hello"}]}},
    "stopReason": "end_turn",
    "usage": {
        "inputTokens": 3,
        "outputTokens": 12,
        "totalTokens": 25052,
        "cacheReadInputTokens": 25037,
        "cacheWriteInputTokens": 0,
    },
    "metrics": {"latencyMs": 400},
    "ResponseMetadata": {"RequestId": "req", "HTTPStatusCode": 200, "HTTPHeaders": {}},
}


class MemorySource:
    """Flags and counters held in memory: every flag normal (a warm, healthy store)."""

    def read(self, keys: Any) -> tuple[dict[str, Flag], dict[Any, ScopeTotals]]:
        return {s: Flag(scope=s) for s, _ in keys}, {k: ScopeTotals(scope=k[0], window=k[1]) for k in keys}


class NullEvents:
    def put_events(self, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        return {"FailedEntryCount": 0, "Entries": [{"EventId": "e"} for _ in Entries]}


class Canned:
    """A bedrock-runtime stand-in answering at once."""

    meta = type("Meta", (), {"region_name": "us-east-1"})()

    def converse(self, **_: Any) -> dict[str, Any]:
        return dict(RESPONSE)


def guarded(bedrock: Any) -> GuardedBedrockClient:
    # Budgets far above what the benchmark spends: every call takes the normal path.
    settings = load_settings(table_name="bench", thresholds="alert=1000000,throttle=1000000,shutdown=1000000")
    client = GuardedBedrockClient(
        bedrock,
        metadata={"app": "chat-api"},
        caller="arn:aws:sts::123456789012:assumed-role/chat-api-role/chat-api",  # no STS lookup offline
        settings=settings,
        options=ClientOptions(report="events", background=True),
        flag_cache=FlagCache(MemorySource(), ttl=1.0),
        events=NullEvents(),  # type: ignore[arg-type]
    )
    # Warm flags, warm per-model rates, warm scope and window caches, reporter thread started.
    client.converse(**REQUEST)  # type: ignore[arg-type]
    client.flush()
    return client


def interleaved(bare: Callable[[], Any], wrapped: Callable[[], Any], calls: int) -> tuple[list[int], list[int]]:
    bare_ns: list[int] = []
    wrapped_ns: list[int] = []
    clock = time.perf_counter_ns
    gc.collect()
    for _ in range(calls):
        t0 = clock()
        bare()
        t1 = clock()
        wrapped()
        t2 = clock()
        bare_ns.append(t1 - t0)
        wrapped_ns.append(t2 - t1)
    return bare_ns, wrapped_ns


def report(name: str, bare_ns: list[int], wrapped_ns: list[int]) -> float:
    def q(values: list[int], p: float) -> float:
        return statistics.quantiles(values, n=100)[int(p) - 1] / 1000

    bare_med = statistics.median(bare_ns) / 1000
    wrapped_med = statistics.median(wrapped_ns) / 1000
    added = wrapped_med - bare_med
    print(f"{name}: {len(bare_ns)} calls each")
    print(f"  bare     median {bare_med:8.2f} us   p90 {q(bare_ns, 90):8.2f} us   p99 {q(bare_ns, 99):8.2f} us")
    print(
        f"  guarded  median {wrapped_med:8.2f} us   p90 {q(wrapped_ns, 90):8.2f} us   p99 {q(wrapped_ns, 99):8.2f} us"
    )
    print(f"  added overhead (median difference): {added:.2f} us")
    return added


def main() -> None:
    print(f"guarded Bedrock call overhead, warm flags, {MODEL}, usage with 25,037 cache-read tokens")

    canned = Canned()
    client = guarded(canned)
    bare_canned = lambda: canned.converse(**REQUEST)  # noqa: E731
    guarded_canned = lambda: client.converse(**REQUEST)  # type: ignore[arg-type]  # noqa: E731
    interleaved(bare_canned, guarded_canned, 2000)  # warm-up
    added_canned = report("canned response", *interleaved(bare_canned, guarded_canned, CALLS))
    client.flush()

    calls = CALLS // 4
    raw_bare = boto3.client("bedrock-runtime", region_name="us-east-1")
    raw_guarded = boto3.client("bedrock-runtime", region_name="us-east-1")
    stub_bare, stub_guarded = Stubber(raw_bare), Stubber(raw_guarded)
    for _ in range(calls + 500):
        stub_bare.add_response("converse", RESPONSE, None)
        stub_guarded.add_response("converse", RESPONSE, None)
    stub_guarded.add_response("converse", RESPONSE, None)  # the warm-up call in guarded()
    stub_bare.activate()
    stub_guarded.activate()
    client = guarded(raw_guarded)
    # The bare call sends the request the guarded one sends (the guard tags it with the client's metadata,
    # which botocore then validates and serialises like any other parameter).
    tagged = {**REQUEST, "requestMetadata": {"app": "chat-api"}}
    bare_stub = lambda: raw_bare.converse(**tagged)  # noqa: E731
    guarded_stub = lambda: client.converse(**REQUEST)  # type: ignore[arg-type]  # noqa: E731
    interleaved(bare_stub, guarded_stub, 500)  # warm-up
    added_stub = report("botocore Stubber (same request on both sides)", *interleaved(bare_stub, guarded_stub, calls))
    client.flush()

    verdict = "meets" if max(added_canned, added_stub) <= 20 else "MISSES"
    print(f"target <= 20 us median added: {verdict} (canned {added_canned:.2f} us, Stubber {added_stub:.2f} us)")


# ---- issue 16: the same Stubber pair with budget leases on (ClientOptions(leases=True)) -----------------
# A warm lease: the slices come from an in-memory lease store (a grant is one DynamoDB UpdateItem per
# slice, about one per 650 calls here at $5 slices); what is measured is the hot path, the local take from
# the slice and its settlement after the call.


class MemoryLeaseStore:
    """Grants every slice (the budget is far away); counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def grant(self, key: Any, holder: str, add: Any, **_: Any) -> Any:
        from guardrail.store.leases import LeaseItem

        self.calls += 1
        return True, LeaseItem()

    def release(self, *_: Any) -> bool:
        self.calls += 1
        return True

    def repay(self, *_: Any) -> None:
        self.calls += 1

    def reclaim(self, *_: Any) -> bool:
        return False


def leases_on() -> float:
    """Bare vs guarded with leases off vs guarded with leases on, interleaved call by call."""
    from guardrail.client.leases import Leases
    from guardrail.core.leases import LeasePolicy

    calls = CALLS // 4
    raws = [boto3.client("bedrock-runtime", region_name="us-east-1") for _ in range(3)]
    stubs = [Stubber(raw) for raw in raws]
    for i, stub in enumerate(stubs):
        for _ in range(calls + 500 + (2 if i else 0)):  # guarded: the warm-up call in guarded(), the first lease
            stub.add_response("converse", RESPONSE, None)
        stub.activate()
    bare, off, on = raws[0], guarded(raws[1]), guarded(raws[2])
    store = MemoryLeaseStore()
    # What ClientOptions(leases=True) builds, on the in-memory store.
    on.leases = Leases(store, LeasePolicy(), clock=time.time, item_expires=lambda _: 0)
    on.converse(**REQUEST)  # type: ignore[arg-type]  # first slice leased
    off.converse(**REQUEST)  # type: ignore[arg-type]
    tagged = {**REQUEST, "requestMetadata": {"app": "chat-api"}}
    callers = [
        lambda: bare.converse(**tagged),
        lambda: off.converse(**REQUEST),  # type: ignore[arg-type]
        lambda: on.converse(**REQUEST),  # type: ignore[arg-type]
    ]
    clock = time.perf_counter_ns
    timings: list[list[int]] = [[], [], []]
    gc.collect()
    for n in range(calls + 500):
        for i, fn in enumerate(callers):
            t0 = clock()
            fn()
            if n >= 500:  # the first 500: warm-up
                timings[i].append(clock() - t0)
    bare_med, off_med, on_med = (statistics.median(t) / 1000 for t in timings)
    print(f"botocore Stubber, budget leases off vs on (same run, interleaved): {calls} calls each")
    print(
        f"  bare median {bare_med:.2f} us; added: leases off {off_med - bare_med:.2f} us, on {on_med - bare_med:.2f} us"
    )
    print(f"  leases themselves: {on_med - off_med:.2f} us; lease store calls: {store.calls} for {calls + 501} calls")
    added = on_med - bare_med
    print(f"target <= 20 us median added with leases on: {'meets' if added <= 20 else 'MISSES'} ({added:.2f} us)")
    off.flush()
    on.flush()
    return added


if __name__ == "__main__":
    main()
    leases_on()
