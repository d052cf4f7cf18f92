"""Items 9 and 10: a target that does not exist is said once and marked missing; a target deleted between
shutdown and reset is released with one notice saying so."""

from __future__ import annotations

import json

import pytest

import guardrail.service.oncall  # noqa: F401
import handlers.reset
import handlers.schedule
from guardrail.service.runtime import build
from guardrail.tools.status import status_document
from tests.support.world import World, batch


def test_a_target_that_does_not_exist_is_said_once_and_shown_missing(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GUARDRAIL_TARGET_FUNCTIONS", "chat-api,ghost-fn")
    world.usage(batch("a", 60))
    assert world.concurrency("chat-api") == 0
    pages = world.sns_messages()
    shutdown = [p for p in pages if "SHUTDOWN" in p]
    assert len(shutdown) == 1 and "ghost-fn does not exist" in shutdown[0]
    flag = world.flag()
    assert flag.applied and flag.targets["ghost-fn"].status == "missing"

    for _ in range(3):  # schedule runs: no new page, nothing "saved and stopped"
        report = handlers.schedule.handler({}, world.ctx)
        assert not any("ghost-fn" in r for r in report["repaired"]), report
        assert not any("ghost-fn" in f for f in report["failures"]), report
    assert world.sns_messages() == []

    (scope,) = status_document(build())["scopes"]
    ghost = next(t for t in scope["targets"] if t["function"] == "ghost-fn")
    assert ghost["status"] == "missing" and "not found" in ghost["message"].lower()

    result = handlers.reset.handler({"scope": "global", "reason": "drill", "actor": "alice"}, world.ctx)
    assert result["ok"] and world.concurrency("chat-api") == 7 and world.flag().targets == {}


def test_a_target_deleted_before_reset_is_released_with_one_notice(world: World) -> None:
    world.usage(batch("a", 60))
    assert world.concurrency("worker") == 0
    world.sns_messages()
    world.lam.delete_function(FunctionName="worker")

    result = handlers.reset.handler({"scope": "global", "reason": "worker retired", "actor": "alice"}, world.ctx)
    assert result["ok"], result
    assert world.flag().targets == {}  # released, not restore_failed
    (notice,) = world.sns_messages()
    assert "worker no longer exists: released, nothing to restore" in notice
    assert world.concurrency("chat-api") == 7
    handlers.schedule.handler({}, world.ctx)
    assert world.sns_messages() == [] and world.flag().targets == {}
    assert json.dumps(status_document(build())).count("restore_failed") == 0
