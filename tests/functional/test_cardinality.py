"""Item 1: ingest never fails because of cardinality. Spend by model, app and caller lives in one item per
key, so distinct callers whose names together pass the 400 KB that used to break the counter item count
exactly, and status still names the top spenders. The 100,000 case is benchmarks/bench_cardinality.py."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from guardrail.service.runtime import build
from guardrail.tools.status import render_status, status_document
from tests.support.factories import log_line, logs_event, record
from tests.support.world import World

CALLERS = 600
PER_EVENT = 300


def caller(i: int) -> str:
    # ~900 bytes each: 600 of them are over 500 KB, past the 400 KB item that used to hold them all.
    return f"arn:aws:sts::123456789012:assumed-role/tenant-role-{i:06d}/session-{i:06d}-" + "x" * 840


def test_thousands_of_distinct_callers_apps_and_models_count_exactly(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GUARDRAIL_THRESHOLDS", "alert=100000,throttle=200000,shutdown=300000")
    monkeypatch.setenv(
        "GUARDRAIL_PRICE_OVERRIDES", json.dumps({f"model-{i}": {"input": 1, "output": 1} for i in range(50)})
    )
    now = datetime.now(UTC)
    expected = Decimal(0)
    for start in range(0, CALLERS, PER_EVENT):
        lines = []
        for i in range(start, start + PER_EVENT):
            tokens = 1000 + i  # every caller spends a different amount: the top three are the last three
            r = record(f"c-{i}", model=f"model-{i % 50}", input_tokens=tokens, output_tokens=0, at=now, app=f"app-{i}")
            lines.append(log_line(r).replace("arn:aws:sts::123456789012:assumed-role/app/app", caller(i)))
            expected += Decimal(tokens) / 1_000_000
        result = world.usage(logs_event(lines))
        assert result["recorded"] == PER_EVENT and result["quarantined"] == []

    (scope,) = status_document(build())["scopes"]
    assert Decimal(scope["spend_usd"]) == expected and scope["requests"] == CALLERS
    callers = scope["top"]["callers"]
    assert [t["name"] for t in callers["top"]] == [caller(CALLERS - 1), caller(CALLERS - 2), caller(CALLERS - 3)]
    assert callers["others"] == CALLERS - 3
    assert sum(Decimal(t["spend_usd"]) for t in callers["top"]) + Decimal(callers["others_spend_usd"]) == expected
    assert scope["top"]["apps"]["others"] == CALLERS - 3 and scope["top"]["models"]["others"] == 47
    assert f"top callers  {caller(CALLERS - 1)}" in render_status(status_document(build()))
