"""Issue 19, item 5: from the crossing record to the last target at 0 in at most 6 AWS calls for two targets,
and a kept reading (the schedule run's, saved instead of reading the target on the critical path) never puts
a guardrail-made 0 in place of a saved value: not when it is stale or absent, not when it was taken while
another scope held the target at 0, not after a late stop on a released target."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

import guardrail.service.oncall  # noqa: F401
import handlers.reset
import handlers.schedule
from guardrail.service.runtime import default_runtime
from guardrail.store.targets import TargetStore
from tests.support.common import TABLE
from tests.support.factories import log_line, logs_event, record
from tests.support.interleave import SERVICES
from tests.support.world import World, batch

LOW = {"alert": 1, "throttle": 2, "shutdown": 3}
STOPS = ("PutFunctionConcurrency", "PutRolePolicy")


class Calls:
    """Every AWS call the runtime's clients make, in order (botocore's before-call event)."""

    def __init__(self) -> None:
        self.names: list[str] = []
        for service in SERVICES:
            default_runtime().client(service).meta.events.register("before-call", self._before)

    def _before(self, model: Any, **_: Any) -> None:
        self.names.append(model.name)

    def critical_path(self) -> list[str]:
        """From the first call to the last stop."""
        last = max(i for i, name in enumerate(self.names) if name in STOPS)
        return self.names[: last + 1]


def two_budgets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "GUARDRAIL_BUDGETS",
        json.dumps(
            [
                {"scope": "global", "thresholds": LOW, "targets": ["chat-api", "worker"]},
                {"scope": "app:x", "thresholds": LOW, "targets": ["chat-api"]},
            ]
        ),
    )
    default_runtime.cache_clear()


def spend(world: World, app: str, prefix: str) -> dict[str, Any]:
    """7 records of $0.495 for `app`: past a $3 shutdown."""
    now = datetime.now(UTC)
    lines = [
        log_line(record(f"{prefix}-{i}", input_tokens=100_000, output_tokens=10_000, at=now, app=app)) for i in range(7)
    ]
    return world.usage(logs_event(lines))


def reset(world: World, scope: str) -> None:
    assert handlers.reset.handler({"scope": scope, "reason": "drill", "actor": "alice"}, world.ctx)["ok"]


def store() -> TargetStore:
    return TargetStore(boto3.client("dynamodb", region_name="us-east-1"), TABLE)


def test_two_targets_are_at_0_within_six_aws_calls_of_the_crossing_record(world: World) -> None:
    world.usage(batch("a", 50))  # $24.75: alert and throttle are behind us
    handlers.schedule.handler({}, world.ctx)  # the periodic run keeps each target's reading
    calls = Calls()
    world.usage(batch("b", 1))  # the crossing record
    path = calls.critical_path()
    assert len(path) <= 6, path
    assert "GetFunctionConcurrency" not in path and "GetItem" not in path  # nothing it already knows
    assert world.concurrency("chat-api") == 0 and world.concurrency("worker") == 0
    flag = world.flag()
    assert (flag.targets["chat-api"].saved, flag.targets["worker"].saved) == (7, None) and flag.applied
    reset(world, "global")
    assert world.concurrency("chat-api") == 7 and world.concurrency("worker") is None


def test_without_a_fresh_kept_reading_the_shutdown_reads_the_target(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    world.usage(batch("a", 50))
    handlers.schedule.handler({}, world.ctx)  # keeps 7
    world.lam.put_function_concurrency(FunctionName="chat-api", ReservedConcurrentExecutions=9)  # on-call
    monkeypatch.setattr("guardrail.service.holds.READING_FRESH", timedelta(0))  # that reading is stale now
    calls = Calls()
    world.usage(batch("b", 1))
    assert calls.critical_path().count("GetFunctionConcurrency") == 2
    assert world.flag().targets["chat-api"].saved == 9  # read now, not the stale 7
    reset(world, "global")
    assert world.concurrency("chat-api") == 9


@pytest.mark.parametrize("race_before", ["read", "write"])
def test_a_reading_kept_while_another_scope_stopped_the_target_is_never_saved(
    world: World, monkeypatch: pytest.MonkeyPatch, race_before: str
) -> None:
    """The schedule run reads chat-api's item, then (before it reads chat-api, or before it writes the
    reading) scope global shuts down and holds chat-api at 0. The reading must not be kept: after global's
    reset and a late stop of ours (0 again), app:x's shutdown saves 7, and its reset restores 7."""
    two_budgets(monkeypatch)
    handlers.schedule.handler({}, world.ctx)  # keeps 7, so a kept reading exists before the race
    raced: list[bool] = []
    effects = default_runtime().effects

    def race() -> None:
        if not raced:
            raced.append(True)
            spend(world, "y", "g")  # counts for global only
            assert world.concurrency("chat-api") == 0

    read, observe = effects.concurrency.read, TargetStore.observe
    if race_before == "read":

        def racing_read(name: str) -> Any:
            if name == "chat-api":
                race()
            return read(name)

        monkeypatch.setattr(effects.concurrency, "read", racing_read)
    else:

        def racing_observe(self: TargetStore, function: str, value: int | None, seen: Any) -> bool:
            if function == "chat-api":
                race()
            kept = observe(self, function, value, seen)
            assert not kept  # the item changed since it was read: the reading is dropped
            return kept

        monkeypatch.setattr(TargetStore, "observe", racing_observe)
    handlers.schedule.handler({}, world.ctx)
    assert raced
    monkeypatch.setattr(effects.concurrency, "read", read)
    monkeypatch.setattr(TargetStore, "observe", observe)
    item = store().get("chat-api")
    assert item is not None and "global" in item.holders
    assert default_runtime().effects.holds.kept_reading(item) is None
    handlers.schedule.handler({}, world.ctx)  # a run while global holds it keeps nothing either
    assert default_runtime().effects.holds.kept_reading(store().get("chat-api")) is None

    reset(world, "global")
    assert world.concurrency("chat-api") == 7
    world.lam.put_function_concurrency(FunctionName="chat-api", ReservedConcurrentExecutions=0)  # a late stop
    spend(world, "x", "x")  # app:x (and global, again) cross now
    assert world.flag().targets.get("chat-api") is None or world.flag().targets["chat-api"].saved == 7
    app = default_runtime().engine.flags.get("app:x")
    assert app.targets["chat-api"].saved == 7 and world.concurrency("chat-api") == 0
    reset(world, "app:x")
    reset(world, "global")
    assert world.concurrency("chat-api") == 7


def test_a_late_stop_after_a_kept_reading_is_not_saved(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stop of ours landing after its hold was released (0 on a released target): the kept reading from
    before it is the pre-guardrail value and is saved as it is; reading the target would find our 0."""
    two_budgets(monkeypatch)
    spend(world, "y", "g")  # global holds chat-api
    reset(world, "global")
    handlers.schedule.handler({}, world.ctx)  # keeps 7
    world.lam.put_function_concurrency(FunctionName="chat-api", ReservedConcurrentExecutions=0)  # late stop
    calls = Calls()
    spend(world, "x", "x")
    assert default_runtime().engine.flags.get("app:x").targets["chat-api"].saved == 7
    assert "GetFunctionConcurrency" not in calls.names
    reset(world, "app:x")
    reset(world, "global")
    assert world.concurrency("chat-api") == 7


def test_a_target_found_at_0_is_not_kept_and_a_kept_reading_is_dropped(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    handlers.schedule.handler({}, world.ctx)
    holds = default_runtime().effects.holds
    assert holds.kept_reading(store().get("chat-api")) is not None
    world.lam.put_function_concurrency(FunctionName="chat-api", ReservedConcurrentExecutions=0)  # on-call's 0
    handlers.schedule.handler({}, world.ctx)
    assert holds.kept_reading(store().get("chat-api")) is None  # a 0 is never a kept reading
    world.usage(batch("a", 60))
    assert world.flag().targets["chat-api"].saved == 0  # read on the critical path: on-call's own 0


def test_a_stale_target_item_from_the_batch_read_never_saves_our_0(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The items the engine read with the counters are older than a hold another scope took since (its 0 is
    on the target): the first-holder write is conditional on the item as read, so it fails, the item is read
    again, and the scope joins with the saved 7 instead of saving the 0 it would read."""
    from guardrail.core.models import Flag, Level
    from guardrail.service.effects import EffectReport

    two_budgets(monkeypatch)
    spend(world, "y", "g")  # global holds chat-api at 0
    runtime = default_runtime()
    flag = Flag(scope="app:x", level=Level.SHUTDOWN, applied=False)
    report = EffectReport(scope="app:x", level=Level.SHUTDOWN)
    stale: dict[str, Any] = {"chat-api": None}  # as read before global's hold
    after = runtime.effects.shutdown(flag, runtime.engine.budget("app:x"), report, items=stale)
    assert after.targets["chat-api"].saved == 7 and after.targets["chat-api"].status == "applied", report
    assert stale["chat-api"].holders == {"global", "app:x"}  # the next scope of the batch joins at once
    item = store().get("chat-api")
    assert item is not None and item.saved == 7 and item.holders == {"global", "app:x"}
    reset(world, "global")
    assert world.concurrency("chat-api") == 0  # app:x still holds it
    reset(world, "app:x")
    assert world.concurrency("chat-api") == 7
