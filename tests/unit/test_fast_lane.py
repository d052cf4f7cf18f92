"""The fast lane of converse and invoke_model (guardrail.client.lanes) does exactly what the general path does.

Two worlds, identical but for one thing: one client calls `converse` and `invoke_model` (the fast lane
wherever it applies), the other `_converse` and `_invoke_model` (the general path: `_admit`,
LocalSpend.admit_locked, Leases.take_locked, `_complete`). Each world has its own clock, flag store, lease
store, Bedrock stand-in and event bus. The same steps run in both (calls of either operation with plain usage,
cache writes, no usage, Bedrock errors, per-call metadata, flags and totals that change, time that passes,
leases returned); after every step the outcomes, what Bedrock was asked, every book and lease amount, the cost
estimates and the usage events must be equal.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from botocore.response import StreamingBody
from hypothesis import given, settings
from hypothesis import strategies as st

from guardrail import GuardrailShutdown
from guardrail.client import ClientOptions, GuardedBedrockClient
from guardrail.client.flag_cache import FlagCache
from guardrail.client.leases import Leases
from guardrail.core.config import load_settings
from guardrail.core.leases import LeasePolicy
from guardrail.core.models import CounterKey, Flag, Level, ScopeTotals
from tests.support.leases import MemoryLeaseStore, Ticking

MODEL = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
HAIKU = "us.anthropic.claude-haiku-4-5-20251001-v1:0"
# Whole dollars per million tokens: up to about $0.15 a call, thresholds crossed within a few dozen calls.
PRICES = json.dumps(
    {
        MODEL: {"input": "3", "output": "15", "cache_read": "0.3", "cache_write": "3.75"},
        HAIKU: {"input": "1", "output": "5", "cache_read": "0.1", "cache_write": "1.25"},
    }
)
BUDGETS = json.dumps(
    [
        {"scope": "global", "thresholds": {"alert": 1, "throttle": 2, "shutdown": 3}},
        {"scope": "app:*", "thresholds": {"alert": 0.5, "throttle": 1, "shutdown": 1.5}},
    ]
)
START = datetime(2026, 11, 23, 23, 59, 10, tzinfo=UTC).timestamp()  # the day ends during a run
POLICY = LeasePolicy(ttl=20, divisor=4, min_slice=Decimal("0.01"), max_slice=Decimal("0.3"), margin=2)


ANTHROPIC_NAMES = {
    "inputTokens": "input_tokens",
    "outputTokens": "output_tokens",
    "cacheReadInputTokens": "cache_read_input_tokens",
    "cacheWriteInputTokens": "cache_creation_input_tokens",
}


class BedrockError(Exception):
    """What the stand-in raises for a failed call (a ThrottlingException, say)."""


@dataclass
class Script:
    """What the Bedrock stand-in answers next."""

    usage: dict[str, int] | None = None
    fail: bool = False


@dataclass
class StandIn:
    """Bedrock runtime answering from a script; records what it was asked."""

    clock: Ticking
    asked: list[dict[str, Any]] = field(default_factory=list)
    next: Script = field(default_factory=Script)
    meta = type("Meta", (), {"region_name": "us-east-1"})()

    def converse(self, **kwargs: Any) -> dict[str, Any]:
        self.asked.append(kwargs)
        if self.next.fail:
            raise BedrockError("ThrottlingException")
        resp: dict[str, Any] = {
            "output": {"message": {"role": "assistant", "content": [{"text": "ok"}]}},
            "stopReason": "end_turn",
            "ResponseMetadata": {"RequestId": f"req-{len(self.asked)}", "HTTPStatusCode": 200},
        }
        if self.next.usage is not None:
            resp["usage"] = dict(self.next.usage)
        self.clock.at += 0.25  # the call takes a while
        return resp

    def invoke_model(self, **kwargs: Any) -> dict[str, Any]:
        """InvokeModel with an Anthropic Messages body: the same usage under the body's names."""
        self.asked.append(kwargs)
        if self.next.fail:
            raise BedrockError("ThrottlingException")
        doc: dict[str, Any] = {"type": "message", "content": [{"type": "text", "text": "ok"}]}
        if self.next.usage is not None:
            doc["usage"] = {ANTHROPIC_NAMES[k]: v for k, v in self.next.usage.items()}
        body = json.dumps(doc).encode()
        self.clock.at += 0.25
        return {
            "body": StreamingBody(io.BytesIO(body), len(body)),
            "contentType": "application/json",
            "ResponseMetadata": {"RequestId": f"req-{len(self.asked)}", "HTTPStatusCode": 200, "HTTPHeaders": {}},
        }


@dataclass
class Store:
    """The flag store: flags and the ledger's totals, as other processes move them."""

    levels: dict[str, Level] = field(default_factory=dict)
    spent: dict[str, Decimal] = field(default_factory=dict)

    def read(self, keys: Any) -> tuple[dict[str, Flag], dict[CounterKey, ScopeTotals]]:
        flags = {s: Flag(scope=s, level=self.levels.get(s, Level.NORMAL)) for s, _ in keys}
        totals = {k: ScopeTotals(scope=k[0], window=k[1], spend=self.spent.get(k[0], Decimal(0))) for k in keys}
        return flags, totals


class Bus:
    def __init__(self) -> None:
        self.details: list[str] = []

    def put_events(self, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        self.details += [e["Detail"] for e in Entries]
        return {"FailedEntryCount": 0, "Entries": [{"EventId": "e"} for _ in Entries]}


class World:
    """One process: its clock, stores, Bedrock and guarded client (with or without budget leases)."""

    def __init__(self, fast: bool, leases: bool = True) -> None:
        self.clock = Ticking(START)
        self.store = Store()
        self.leases = MemoryLeaseStore()
        self.bedrock = StandIn(self.clock)
        self.bus = Bus()
        cfg = load_settings(table_name="t", budgets=BUDGETS, price_overrides=PRICES)
        self.client = GuardedBedrockClient(
            self.bedrock,  # type: ignore[arg-type]
            metadata={"app": "chat-api"},
            caller="arn:aws:iam::123456789012:role/app",
            settings=cfg,
            options=ClientOptions(report="events", background=False, report_packing=1),
            events=self.bus,  # type: ignore[arg-type]
            flag_cache=FlagCache(self.store, ttl=1.0, timer=self.clock),
            timer=self.clock,
            clock=self.clock,
        )
        client = self.client
        if leases:  # what ClientOptions(leases=True) builds, on the in-memory store
            client.leases = Leases(
                self.leases, POLICY, clock=client._clock, item_expires=lambda _: 0, lock=client.spend.lock, holder="p"
            )
        self.converse: Callable[..., Any] = client.converse if fast else (lambda **kw: client._converse(kw))
        self.invoke_model: Callable[..., Any] = client.invoke_model if fast else (lambda **kw: client._invoke_model(kw))

    def call(self, script: Script, metadata: dict[str, str] | None, operation: str = "converse") -> str:
        self.bedrock.next = script
        if operation == "converse":
            request: dict[str, Any] = {"modelId": MODEL, "messages": [{"role": "user", "content": [{"text": "hi"}]}]}
            if metadata is not None:
                request["requestMetadata"] = metadata
        else:
            request = {"modelId": MODEL, "body": json.dumps({"anthropic_version": "bedrock-2023-05-31"})}
        try:
            resp = (self.converse if operation == "converse" else self.invoke_model)(**request)
        except GuardrailShutdown as exc:
            return f"refused {exc.scope}: {exc.reason}"
        except BedrockError as exc:
            return f"failed {exc}"
        text = resp["body"].read().decode() if operation == "invoke_model" else ""  # what the caller reads
        return f"ok {resp['ResponseMetadata']['RequestId']} {resp['ResponseMetadata'].get('Guardrail')} {text}"

    def state(self) -> Any:
        spend, leases = self.client.spend, self.client.leases
        books = {
            name: (b.known, b.known_read_at, b.unreported, list(b.sent), b.sent_total, b.in_flight, b.crossed_at)
            for name, b in spend._books.items()
        }
        held = {
            name: (x.unspent_units, x.in_flight_units, x.synced_units, x.held, x.valid_until, x.claimed)
            for name, x in (leases._leases if leases is not None else {}).items()
            if x.held or x.unspent_units or x.in_flight_units or x.claimed  # (the lane resolves leases a call
        }  # may never use: no state, and nothing to return at close)
        return books, held, dict(spend.estimates), spend.admitted_after_crossing, self.leases.items


tokens = st.integers(0, 20_000)
usage = st.fixed_dictionaries(
    {"inputTokens": tokens, "outputTokens": st.integers(0, 4_000)},
    optional={"cacheReadInputTokens": tokens, "cacheWriteInputTokens": st.integers(0, 5_000)},
)
plain = st.fixed_dictionaries({"inputTokens": tokens, "outputTokens": st.integers(0, 4_000)})
step = st.one_of(
    st.tuples(st.just("call"), plain, st.none()),
    st.tuples(st.just("call"), plain, st.none()),
    st.tuples(st.just("call"), plain, st.none()),
    st.tuples(st.just("call"), usage, st.none()),
    st.tuples(st.just("call"), usage, st.sampled_from([{}, {"app": "chat-api"}, {"tenant": "acme"}])),
    st.tuples(st.just("invoke"), plain, st.none()),
    st.tuples(st.just("invoke"), usage, st.none()),
    st.tuples(st.just("invoke"), st.none(), st.just("fail")),
    st.tuples(st.just("no usage"), st.none(), st.none()),
    st.tuples(st.just("fail"), st.none(), st.none()),
    st.tuples(st.just("wait"), st.sampled_from([0.5, 1.5, 25.0]), st.none()),
    st.tuples(st.just("others spent"), st.sampled_from(["global", "app:chat-api"]), st.decimals(0, 3, places=2)),
    st.tuples(st.just("flag"), st.sampled_from(["global", "app:chat-api"]), st.sampled_from(list(Level))),
    st.tuples(st.just("close"), st.none(), st.none()),
)


def run(world: World, kind: str, a: Any, b: Any) -> str:
    if kind == "call":
        return world.call(Script(usage=a), b)
    if kind == "invoke":
        return world.call(Script(usage=a, fail=b == "fail"), None, "invoke_model")
    if kind == "no usage":
        return world.call(Script(), None)
    if kind == "fail":
        return world.call(Script(fail=True), None)
    if kind == "wait":
        world.clock.sleep(a)
    elif kind == "others spent":
        world.store.spent[a] = b
    elif kind == "flag":
        world.store.levels[a] = b
    elif kind == "close":
        world.client.close()
    return kind


@settings(max_examples=150, deadline=None)
@given(steps=st.lists(step, min_size=20, max_size=80), leases=st.booleans())
def test_the_fast_lane_and_the_general_path_count_every_call_alike(
    steps: list[tuple[str, Any, Any]], leases: bool
) -> None:
    fast, general = World(fast=True, leases=leases), World(fast=False, leases=leases)
    for kind, a, b in steps:
        assert run(fast, kind, a, b) == run(general, kind, a, b), (kind, a, b)
        assert fast.bedrock.asked == general.bedrock.asked
        assert fast.state() == general.state()
        assert fast.bus.details == general.bus.details


@pytest.mark.parametrize("operation", ["converse", "invoke_model"])
def test_the_fast_lane_is_the_one_taken_by_a_plain_call(operation: str) -> None:
    # Given a client whose first call leased slices and learned what a call costs
    world = World(fast=True)
    world.call(Script(usage={"inputTokens": 1000, "outputTokens": 100}), None, operation)
    # When the next plain call runs with the general path out of reach
    world.client._converse = world.client._invoke_model = None  # type: ignore[assignment,method-assign]
    result = world.call(Script(usage={"inputTokens": 1000, "outputTokens": 100}), None, operation)
    # Then it was admitted, counted and reported all the same, and the caller reads the whole answer
    assert result.startswith("ok req-2"), result
    assert operation == "converse" or result.endswith(
        '"text": "ok"}], "usage": {"input_tokens": 1000, "output_tokens": 100}}'
    )
    assert len(world.bus.details) == 2
    assert all(b.in_flight == 0 and b.unreported == 0 for b in world.client.spend._books.values())


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (lambda w: w.call(Script(usage={"inputTokens": 1, "outputTokens": 1}), {"tenant": "acme"}), "metadata"),
        (lambda w: w.store.levels.__setitem__("global", Level.THROTTLE) or w.clock.sleep(1.5), "throttle"),
        (lambda w: w.client.close(), "leases returned"),
    ],
)
def test_anything_unusual_takes_the_general_path(change: Callable[[World], Any], why: str) -> None:
    world = World(fast=True)
    world.call(Script(usage={"inputTokens": 1000, "outputTokens": 100}), None)
    general = world.client._converse
    taken: list[str] = []
    world.client._converse = lambda kw: taken.append(why) or general(kw)  # type: ignore[method-assign]
    change(world)
    world.call(Script(usage={"inputTokens": 1000, "outputTokens": 100}), None)
    assert taken and taken[-1] == why


@pytest.mark.parametrize("leases", [False, True])
def test_a_call_that_crosses_on_the_fast_lane_stops_the_next_one(leases: bool) -> None:
    # Given a process whose app budget ($1.50) has $1.45 spent by others, and calls of $0.06
    world = World(fast=True, leases=leases)
    world.store.spent["app:chat-api"] = Decimal("1.45")
    call = Script(usage={"inputTokens": 20_000, "outputTokens": 0})
    first = world.call(call, None)
    assert first.startswith("ok"), first
    # When the next plain call comes, before any report reached the ledger or the flag
    second = world.call(call, None)
    # Then it is refused at once by this process's own accounting, and Bedrock was called once
    assert second.startswith("refused app:chat-api"), second
    assert len(world.bedrock.asked) == 1
    book = world.client.spend._books[world.client._lane.names[1]]
    assert book.crossed_at is not None or leases  # (with leases the slice ran out first)


def test_leases_on_a_lock_of_their_own_are_refused_with_a_clear_error() -> None:
    # Given leases that do not share the client's accounting lock (both paths settle them under it)
    world = World(fast=True)
    world.client.leases = Leases(world.leases, POLICY, clock=world.client._clock, item_expires=lambda _: 0)
    # When a call comes, then it fails at once, naming what is wrong, and Bedrock is not called
    with pytest.raises(ValueError, match="budget leases must use its lock and clock"):
        world.call(Script(usage={"inputTokens": 1, "outputTokens": 1}), None)
    assert world.bedrock.asked == []
