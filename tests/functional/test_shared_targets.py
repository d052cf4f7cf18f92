"""Item 3: a target shared by several budgets is saved once, held by every scope that stopped it, and
restored only when the last holder is reset, whatever the order of the resets."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime
from typing import Any

import pytest

import guardrail.service.oncall  # noqa: F401
import handlers.reset
from guardrail.service.runtime import build
from guardrail.tools.status import status_document
from tests.support.factories import log_line, logs_event, record
from tests.support.world import World

SCOPES = ("global", "app:x", "tenant:t")
LOW = {"alert": 1, "throttle": 2, "shutdown": 3}


def shared_budgets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "GUARDRAIL_BUDGETS",
        json.dumps(
            [
                {"scope": "global", "thresholds": LOW, "targets": ["chat-api", "worker"]},
                {"scope": "app:x", "thresholds": LOW, "targets": ["chat-api"]},
                {"scope": "tenant:t", "thresholds": LOW, "targets": ["chat-api"]},
            ]
        ),
    )


def spend_over_every_shutdown(world: World, n: int = 7) -> dict[str, Any]:
    """n records of $0.495 for app x and tenant t: all three scopes pass their $3 shutdown at once."""
    now = datetime.now(UTC)
    lines = [
        log_line(record(f"s-{i}", input_tokens=100_000, output_tokens=10_000, at=now, app="x", tenant="t"))
        for i in range(n)
    ]
    return world.usage(logs_event(lines))


def holders(world: World) -> dict[str, list[str]]:
    doc = status_document(build())
    return {s["scope"]: next(t["holders"] for t in s["targets"] if t["function"] == "chat-api") for s in doc["scopes"]}


@pytest.mark.parametrize("order", list(itertools.permutations(SCOPES)), ids="-then-".join)
def test_shared_target_is_restored_only_by_its_last_holder(
    world: World, monkeypatch: pytest.MonkeyPatch, order: tuple[str, ...]
) -> None:
    shared_budgets(monkeypatch)
    result = spend_over_every_shutdown(world)
    assert {t.split(": ")[0] for t in result["transitions"] if t.endswith("-> shutdown")} == set(SCOPES)
    assert world.concurrency("chat-api") == 0 and world.concurrency("worker") == 0
    assert holders(world) == {scope: sorted(SCOPES) for scope in SCOPES}
    world.sns_messages()

    for i, scope in enumerate(order):
        reset = handlers.reset.handler({"scope": scope, "reason": f"drill {i}", "actor": "alice"}, world.ctx)
        assert reset["ok"], reset
        left = sorted(set(SCOPES) - set(order[: i + 1]))
        notice = world.sns_messages()
        assert len(notice) == 1
        if left:
            assert world.concurrency("chat-api") == 0, f"restored while {left} still hold it"
            assert f"chat-api stays at 0: still held by {', '.join(left)}" in notice[0]
            assert holders(world)[left[0]] == left
        else:
            assert world.concurrency("chat-api") == 7  # the pre-guardrail value, saved once
            assert "restored chat-api to 7" in notice[0]
        # worker is held by global alone: restored with global's reset, never before.
        assert world.concurrency("worker") == (None if "global" in order[: i + 1] else 0)
    assert holders(world) == {scope: [] for scope in SCOPES}


def test_a_stop_landing_after_the_last_release_is_undone_by_the_schedule(world: World) -> None:
    import handlers.schedule
    from tests.support.world import batch

    world.usage(batch("a", 60))
    assert handlers.reset.handler({"scope": "global", "reason": "drill", "actor": "alice"}, world.ctx)["ok"]
    assert world.concurrency("chat-api") == 7
    # A shutdown's PutFunctionConcurrency(0) that was still in flight lands now: the tombstone records it.
    world.lam.put_function_concurrency(FunctionName="chat-api", ReservedConcurrentExecutions=0)
    report = handlers.schedule.handler({}, world.ctx)
    assert world.concurrency("chat-api") == 7
    assert any("late stop after its release was undone" in r for r in report["repaired"])
