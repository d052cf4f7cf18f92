"""Who may reset what (issue 13, item 6): only scopes a budget governs and that exist, or exact budget
scopes; every refusal is a clear message, and a refused reset writes nothing."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest

import handlers.reset
from guardrail.service.runtime import default_runtime
from guardrail.tools.cli import main
from tests.support.common import TABLE
from tests.support.factories import log_line, logs_event, record
from tests.support.world import World


@pytest.fixture
def apps(world: World, monkeypatch: pytest.MonkeyPatch) -> World:
    budgets = [{"scope": "global"}, {"scope": "app:*"}, {"scope": "tenant:acme"}]
    monkeypatch.setenv("GUARDRAIL_BUDGETS", json.dumps(budgets))
    default_runtime.cache_clear()
    now = datetime.now(UTC)
    lines = [
        log_line(record(f"r-{i}", input_tokens=100_000, output_tokens=10_000, at=now, app="chat-api"))
        for i in range(60)
    ]
    world.usage(logs_event(lines))
    return world


def items() -> list[dict[str, Any]]:
    return boto3.client("dynamodb", region_name="us-east-1").scan(TableName=TABLE)["Items"]


@pytest.mark.parametrize(
    ("scope", "says"),
    [
        ("app:never-seen-app", "has never spent and holds no flag"),
        ("app:*", "is not a scope"),
        ("app:", "is not a scope"),
        ("nobody:x", "no budget governs scope"),
        ("app:" + "x" * 3000, "a scope is 1 to 256 characters (got 3004)"),
        ("app:chat-api\n", "'app:chat-api\\n' has never spent"),  # shown escaped, on one line
    ],
)
def test_reset_of_a_scope_that_is_not_there_is_refused_clearly(apps: World, scope: str, says: str) -> None:
    before = items()
    result = handlers.reset.handler({"scope": scope, "reason": "fixed", "actor": "alice"}, apps.ctx)
    assert result["ok"] is False and says in result["error"]
    assert "ValidationException" not in result["error"]
    err = io.StringIO()
    code = main(["reset", "--scope", scope, "--reason", "fixed", "--yes"], out=io.StringIO(), err=err)
    assert code == 2 and says in err.getvalue() and err.getvalue().count("\n") == 1
    assert items() == before  # no flag item, no audit entry


def test_scopes_that_spent_and_exact_budget_scopes_can_be_reset(apps: World) -> None:
    spent = handlers.reset.handler({"scope": "app:chat-api", "reason": "fixed", "actor": "alice"}, apps.ctx)
    assert spent["ok"] and spent["from_level"] == "shutdown"
    exact = handlers.reset.handler({"scope": "tenant:acme", "reason": "pre-emptive", "actor": "alice"}, apps.ctx)
    assert exact["ok"] and exact["to_level"] == "normal"
