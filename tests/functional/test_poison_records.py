"""Item 2: a record that can never be stored as it is (metadata over DynamoDB's key limits, text that is not
valid UTF-8) is quarantined with its reason; the rest of its batch counts and the handler does not fail."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from guardrail.core.usage_event import USAGE_DETAIL_TYPE, USAGE_EVENT_SOURCE
from guardrail.service.runtime import build
from tests.support.factories import log_line, logs_event, record
from tests.support.world import World

SURROGATE = "\ud800"


def line(request_id: str, **metadata: str) -> str:
    r = record(request_id, at=datetime.now(UTC))
    return log_line(r).replace('"requestMetadata": {}', f'"requestMetadata": {json.dumps(metadata)}')


def usage_event(request_id: str, metadata: dict[str, str]) -> dict[str, Any]:
    return {
        "source": USAGE_EVENT_SOURCE,
        "detail-type": USAGE_DETAIL_TYPE,
        "detail": {
            "requestId": request_id,
            "timestamp": datetime.now(UTC).isoformat(),
            "modelId": "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
            "inputTokens": 1000,
            "outputTokens": 100,
            "metadata": metadata,
        },
    }


@pytest.fixture
def per_app(world: World, monkeypatch: pytest.MonkeyPatch) -> World:
    monkeypatch.setenv("GUARDRAIL_BUDGETS", json.dumps([{"scope": "global"}, {"scope": "app:*"}]))
    return world


def test_poison_log_records_are_quarantined_and_their_batch_counts(per_app: World) -> None:
    event = logs_event(
        [
            line("good-1", app="chat"),
            line("long-app", app="x" * 3000),
            line("long-key", **{"k" * 300: "v"}),
            line("surrogate-value", app=f"bad{SURROGATE}"),
            line("surrogate-key", **{f"a{SURROGATE}": "v"}),
            line("good-2", app="chat"),
        ]
    )
    for _ in range(2):  # a retry of the same batch is just as calm (and counts nothing twice)
        result = per_app.usage(event)
    assert result["recorded"] == 0 and result["duplicates"] == 2
    reasons = result["quarantined"]
    assert len(reasons) == 4
    assert any("3000 bytes, over the 512 bytes" in r for r in reasons)
    assert any("requestMetadata key is 300 bytes" in r for r in reasons)
    assert sum("not valid UTF-8" in r for r in reasons) == 2

    runtime = build()
    assert runtime.engine.scope_totals("app:chat").requests == 2
    assert runtime.engine.scope_totals("global").requests == 2
    kept = runtime.engine.ledger.quarantined(datetime.now(UTC))
    assert len({k["reason"] for k in kept}) == 4 and any("\\ud800" in k["raw"] for k in kept)


def test_poison_usage_events_are_quarantined(per_app: World) -> None:
    bad = per_app.usage(usage_event("ev-bad", {"app": f"x{SURROGATE}"}))
    assert bad["recorded"] == 0 and "not valid UTF-8" in bad["quarantined"][0]
    long = per_app.usage(usage_event("ev-long", {"app": "y" * 600}))
    assert long["recorded"] == 0 and "over the 512 bytes" in long["quarantined"][0]
    good = per_app.usage(usage_event("ev-good", {"app": "chat"}))
    assert good["recorded"] == 1 and good["quarantined"] == []
    assert build().engine.scope_totals("app:chat").spend > Decimal(0)
