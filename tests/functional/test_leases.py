"""Budget leases on moto: processes (here: separate guarded clients, each its own lease holder) sharing one
budget stop at its shutdown threshold; slices are refused with a reason, released, returned after a
holder dies, and taken in every scope a call counts in."""

from __future__ import annotations

import gc
import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from guardrail import GuardrailShutdown
from guardrail.client import ClientOptions, GuardedBedrockClient
from guardrail.core.config import load_settings
from guardrail.store.leases import lease_from_item
from guardrail.store.table import item_key, lease_key
from tests.support.common import TABLE
from tests.support.leases import Ticking

MODEL = "test.model-v1:0"
PRICES = json.dumps({MODEL: {"input": "1", "output": "1"}})  # 100,000 input tokens: $0.10 per request
COST = Decimal("0.1")
START = datetime(2026, 11, 22, 10, 30, tzinfo=UTC).timestamp()


class CannedBedrock:
    meta = type("Meta", (), {"region_name": "us-east-1"})()

    def __init__(self) -> None:
        self.calls = 0

    def converse(self, **_: Any) -> dict[str, Any]:
        self.calls += 1
        return {
            "output": {"message": {"role": "assistant", "content": [{"text": "ok"}]}},
            "stopReason": "end_turn",
            "usage": {"inputTokens": 100_000, "outputTokens": 0, "totalTokens": 100_000},
            "ResponseMetadata": {"RequestId": f"req-{id(self)}-{self.calls}", "HTTPStatusCode": 200},
        }


class NullEvents:
    def put_events(self, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        return {"FailedEntryCount": 0, "Entries": [{"EventId": "e"} for _ in Entries]}


def process(
    ddb: Any, clock: Ticking, *, metadata: dict[str, str] | None = None, budgets: str | None = None, **options: Any
) -> GuardedBedrockClient:
    """One process's guarded client: its own lease holder, local accounting and flag cache."""
    settings = load_settings(
        table_name=TABLE, thresholds="alert=0.5,throttle=0.8,shutdown=1", price_overrides=PRICES, budgets=budgets
    )
    client = GuardedBedrockClient(
        CannedBedrock(),  # type: ignore[arg-type]
        metadata=metadata or {},
        caller="arn:aws:iam::123456789012:role/app",
        settings=settings,
        options=ClientOptions(report="events", background=False, **{"leases": True, **options}),
        dynamodb=ddb,
        events=NullEvents(),  # type: ignore[arg-type]
        clock=clock,
    )
    assert client.leases is not None
    client.leases.sleep = clock.sleep  # a waiting call moves the test's clock, not the wall clock
    return client


def call(client: GuardedBedrockClient) -> None:
    client.converse(modelId=MODEL, messages=[{"role": "user", "content": [{"text": "hi"}]}])


def spent(client: GuardedBedrockClient) -> Decimal:
    return COST * client._bedrock.calls  # type: ignore[attr-defined]


def lease_item(ddb: Any, scope: str, client: GuardedBedrockClient) -> Any:
    key = next(k for k in client._windows(client._default_scopes).keys if k[0] == scope)
    return lease_from_item(ddb.get_item(TableName=TABLE, Key=item_key(lease_key(key)), ConsistentRead=True).get("Item"))


def test_processes_sharing_a_budget_stop_at_its_shutdown_threshold(ddb: Any) -> None:
    # Given three processes spending $0.10 per request against a $1 shutdown threshold
    clock = Ticking(START)
    clients = [process(ddb, clock) for _ in range(3)]
    refusals: list[GuardrailShutdown] = []
    # When they call in turn until every one is refused
    while len(refusals) < 3:
        refusals = []
        for client in clients:
            try:
                call(client)
            except GuardrailShutdown as exc:
                refusals.append(exc)
    # Then together they spent exactly the threshold (no report had to reach the ledger first)
    assert sum(spent(c) for c in clients) == Decimal(1)
    # And each was refused like at shutdown, with the reason and the reset command
    assert all(r.scope == "global" and r.level == "shutdown" and "budget lease" in r.reason for r in refusals)
    assert "guardrail reset --scope global" in refusals[0].reset_command
    for client in clients:
        client.close()
    # And once every slice is returned the lease item holds exactly what was spent, and no holder
    item = lease_item(ddb, "global", clients[0])
    assert item.claimed == Decimal(1) and item.holders == {}


def test_a_released_slice_returns_to_the_budget(ddb: Any) -> None:
    clock = Ticking(START)
    first = process(ddb, clock, lease_divisor=1)  # a slice is the whole headroom
    call(first)
    assert lease_item(ddb, "global", first).claimed == Decimal(1)  # it holds everything
    second = process(ddb, clock, lease_divisor=1)
    with pytest.raises(GuardrailShutdown, match="budget lease"):
        call(second)
    # When the first closes (as it does at exit), what it did not spend returns
    first.close()
    assert lease_item(ddb, "global", first).claimed == COST
    for _ in range(9):
        call(second)
    assert spent(first) + spent(second) == Decimal(1)


def test_a_process_that_dies_holding_a_slice_blocks_the_budget_only_until_its_lease_expires(ddb: Any) -> None:
    # Given a process that leased the whole headroom, spent $0.10 and died without returning the rest
    clock = Ticking(START)
    doomed = process(ddb, clock, lease_divisor=1, lease_ttl=30)
    call(doomed)
    del doomed
    gc.collect()  # its exit hook holds it weakly: a dead process returns nothing
    survivor = process(ddb, clock, lease_divisor=1, lease_ttl=30)
    # Then until its lease expires the others are refused
    clock.at += 29
    with pytest.raises(GuardrailShutdown, match="budget lease"):
        call(survivor)
    # And once it has expired, the next call returns the dead process's slice and spends from it. The
    # $0.10 the dead process spent after its last lease write returns with it (the bound's crash term,
    # docs/leases.md); its report still reaches the ledger, and the flag path counts it.
    clock.at += 2
    for _ in range(10):
        call(survivor)
    assert spent(survivor) == Decimal(1)
    with pytest.raises(GuardrailShutdown):
        call(survivor)


def test_a_call_can_wait_for_a_slice_instead_of_being_refused(ddb: Any) -> None:
    clock = Ticking(START)
    holder = process(ddb, clock, lease_divisor=1, lease_ttl=30)
    call(holder)
    waiter = process(ddb, clock, lease_divisor=1, lease_ttl=30, lease_wait=60)
    # When a waiting process finds the headroom leased, it waits (the holder's slice expires after 30 s)
    call(waiter)
    assert START + 30 <= clock.at <= START + 32
    # And a wait that ends before any slice returns is refused like at shutdown
    short = process(ddb, clock, lease_divisor=1, lease_wait=5)
    with pytest.raises(GuardrailShutdown, match="budget lease"):
        call(short)


def test_leases_apply_in_every_scope_a_call_counts_in(ddb: Any) -> None:
    budgets = json.dumps(
        [
            {"scope": "global", "thresholds": {"alert": 5, "throttle": 8, "shutdown": 10}},
            {"scope": "app:*", "thresholds": {"alert": "0.3", "throttle": "0.4", "shutdown": "0.5"}},
        ]
    )
    clock = Ticking(START)
    apps = [process(ddb, clock, metadata={"app": "chat"}, budgets=budgets) for _ in range(2)]
    other = process(ddb, clock, metadata={"app": "batch"}, budgets=budgets)
    refused: dict[int, GuardrailShutdown] = {}
    while len(refused) < len(apps):
        for i, client in enumerate(apps):
            try:
                call(client)
            except GuardrailShutdown as exc:
                refused[i] = exc
    assert all(exc.scope == "app:chat" for exc in refused.values())
    assert any("$0.5 shutdown limit" in exc.reason for exc in refused.values())
    assert sum(spent(c) for c in apps) == Decimal("0.5")
    call(other)  # another app's budget is its own
    for client in [*apps, other]:
        client.close()
    assert lease_item(ddb, "app:chat", apps[0]).claimed == Decimal("0.5")
    assert lease_item(ddb, "global", apps[0]).claimed == Decimal("0.6")


class Unreachable:
    """The table answers reads (flags) but every lease update fails as if the network were down."""

    def __init__(self, ddb: Any) -> None:
        self._ddb = ddb
        self.exceptions = ddb.exceptions
        self.meta = ddb.meta

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ddb, name)

    def update_item(self, **_: Any) -> Any:
        from botocore.exceptions import EndpointConnectionError

        raise EndpointConnectionError(endpoint_url="https://dynamodb.us-east-1.amazonaws.com")


def test_an_unreachable_lease_store_follows_the_fail_mode(ddb: Any, caplog: pytest.LogCaptureFixture) -> None:
    clock = Ticking(START)
    open_ = process(Unreachable(ddb), clock, fail_mode="open")
    call(open_)  # admitted without a lease, logged at ERROR
    assert "budget lease store unreachable" in caplog.text
    closed = process(Unreachable(ddb), clock, fail_mode="closed")
    with pytest.raises(GuardrailShutdown, match="unreachable"):
        call(closed)


def test_with_leases_off_nothing_is_leased(ddb: Any) -> None:
    clock = Ticking(START)
    settings = load_settings(table_name=TABLE, thresholds="alert=0.5,throttle=0.8,shutdown=1", price_overrides=PRICES)
    client = GuardedBedrockClient(
        CannedBedrock(),  # type: ignore[arg-type]
        caller="arn:aws:iam::123456789012:role/app",
        settings=settings,
        options=ClientOptions(report="events", background=False),
        dynamodb=ddb,
        events=NullEvents(),  # type: ignore[arg-type]
        clock=clock,
    )
    call(client)
    assert client.leases is None
    assert not [i for i in ddb.scan(TableName=TABLE)["Items"] if i["pk"]["S"].startswith("LEASE#")]


HOLDER = """
import sys, time
from decimal import Decimal
import boto3
from guardrail.client.leases import Leases, LeaseCharge
from guardrail.core.leases import LeasePolicy
from guardrail.store.leases import DynamoLeaseStore
from tests.support.leases import GLOBAL

ddb = boto3.client("dynamodb", region_name="us-east-1", endpoint_url=sys.argv[1])
leases = Leases(DynamoLeaseStore(ddb, sys.argv[2]), LeasePolicy(ttl=30, divisor=1), clock=time.time,
                item_expires=lambda _: 0)
charge = leases.admit((GLOBAL,), ("global|day",), [Decimal(1)], Decimal("0.1"))
assert isinstance(charge, LeaseCharge)
print("holding", flush=True)
sys.stdin.readline()  # killed before it returns anything
"""


def test_a_real_process_killed_while_holding_a_slice_frees_it_after_the_lease_expiry() -> None:
    import os
    import subprocess
    import sys
    import time
    from pathlib import Path

    import boto3
    from moto.server import ThreadedMotoServer

    from guardrail.client.leases import LeaseCharge, Leases
    from guardrail.core.leases import LeasePolicy
    from guardrail.store.leases import DynamoLeaseStore
    from guardrail.store.table import create_table
    from tests.support.leases import GLOBAL

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        ddb = boto3.client("dynamodb", region_name="us-east-1", endpoint_url=endpoint)
        create_table(ddb, "crash")
        root = Path(__file__).resolve().parents[2]
        env = {**os.environ, "PYTHONPATH": str(root)}
        # Given a real process that leased the whole $1 headroom
        holder = subprocess.Popen(
            [sys.executable, "-c", HOLDER, endpoint, "crash"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env
        )
        assert holder.stdout is not None and holder.stdout.readline().strip() == b"holding"
        # When it is killed (no exit hook runs)
        holder.kill()
        holder.wait()
        now = time.time()
        clock = Ticking(now)
        other = Leases(
            DynamoLeaseStore(ddb, "crash"), LeasePolicy(ttl=30, divisor=1), clock=clock, item_expires=lambda _: 0
        )
        # Then the others are refused until its lease expires, and get its slice after
        assert not isinstance(other.admit((GLOBAL,), ("global|day",), [Decimal(1)], COST), LeaseCharge)
        clock.at = now + 31
        assert isinstance(other.admit((GLOBAL,), ("global|day",), [Decimal(1)], COST), LeaseCharge)
    finally:
        server.stop()
