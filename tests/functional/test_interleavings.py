"""Items 4 and 5: whatever interleaving of shutdown, reset and schedule, and wherever a reset crashes, no
target stays changed without a durable record that leads to its repair, and every transition's notice is
delivered at least once (at worst twice)."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

import guardrail.service.oncall  # noqa: F401
import handlers.reset
import handlers.schedule
from guardrail.core.models import Level
from guardrail.service.runtime import default_runtime
from tests.support.interleave import Crash, Stepper
from tests.support.world import World, batch

ORIGINAL = {"chat-api": 7, "worker": None}
MAX_CALLS = 30  # more than a shutdown or a reset makes


def assert_consistent(world: World) -> None:
    """Every target is at 0 exactly when a shut-down flag holds it, else at its pre-guardrail value."""
    flag = world.flag()
    for name, original in ORIGINAL.items():
        held = flag.level == Level.SHUTDOWN and name in flag.targets
        assert world.concurrency(name) == (0 if held else original), (name, flag)


def reset(world: World) -> dict[str, object]:
    return handlers.reset.handler({"scope": "global", "reason": "drill", "actor": "alice"}, world.ctx)


@pytest.mark.parametrize("kept", [False, True], ids=["read-on-the-path", "kept-reading"])
@pytest.mark.parametrize("at", range(1, MAX_CALLS))
def test_a_reset_at_any_aws_call_of_a_shutdown_leaves_nothing_unrecorded(world: World, at: int, kept: bool) -> None:
    if kept:  # the schedule run kept the targets' readings: the shutdown saves them without reading
        handlers.schedule.handler({}, world.ctx)
    stepper = Stepper(default_runtime())
    event = batch("a", 60)
    shutdown = threading.Thread(target=world.usage, args=(event,))
    stepper.arm(shutdown, at)
    shutdown.start()
    if not stepper.paused_in(shutdown):
        shutdown.join()
        pytest.skip(f"the shutdown makes fewer than {at} AWS calls")
    reset(world)  # in this thread: between two AWS calls of the shutdown
    stepper.resume.set()
    shutdown.join(30)
    handlers.schedule.handler({}, world.ctx)
    assert_consistent(world)
    handlers.schedule.handler({}, world.ctx)  # and a second run changes nothing
    assert_consistent(world)


@pytest.mark.parametrize("at", range(1, MAX_CALLS))
def test_a_reset_crashing_at_any_aws_call_is_finished_with_its_notice_by_the_schedule(
    world: World, monkeypatch: pytest.MonkeyPatch, at: int
) -> None:
    monkeypatch.setattr("guardrail.service.schedule.NOTICE_GRACE", timedelta(0))
    world.usage(batch("a", 60))
    assert world.flag().level == Level.SHUTDOWN
    world.sns_messages()
    stepper = Stepper(default_runtime())
    stepper.arm(threading.current_thread(), at, crash=True)
    try:
        reset(world)
        crashed = False
    except Crash:
        crashed = True
    stepper.arm(None, 0)
    if not crashed and at > 1:
        pytest.skip(f"the reset makes fewer than {at} AWS calls")
    handlers.schedule.handler({}, world.ctx)
    assert_consistent(world)
    normal = [m for m in world.sns_messages() if "NORMAL" in m]
    if world.flag().level == Level.NORMAL:
        assert 1 <= len(normal) <= 2, normal  # at least once; a crash after the publish duplicates it once
        assert world.flag().applied
    else:
        assert normal == []  # the crash came before the reset was committed: nothing happened
    handlers.schedule.handler({}, world.ctx)
    assert not [m for m in world.sns_messages() if "NORMAL" in m]  # repaired once, not on every run
