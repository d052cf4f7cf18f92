"""Packed usage events (`Bedrock Usage Batch`, issue 19; `Bedrock Usage Rows`, what the client sends now): one
EventBridge entry carries many client reports. The usage function counts each packed report exactly as it
counts a `Bedrock Usage` event: validated on its own (a bad one is quarantined alone, with its reason),
deduplicated by request id across packed events, rows, single events and retries. The guarded client
packs by default; its events reach the handler through an EventBridge rule that hears every detail type."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from guardrail.client import GuardedBedrockClient
from guardrail.service.runtime import build, default_runtime
from tests.support.bedrock import SONNET, USAGE_COST, Bedrock, call, expected_request, response
from tests.support.factories import ROWS, packed_usage_event, record, rows_usage_event, usage_event
from tests.support.usage_events import event_details
from tests.support.world import World

COST = Decimal("0.00495")  # 1,000 input + 100 output tokens of us. Sonnet 4.5


def now_record(request_id: str, **kw: Any) -> Any:
    return record(request_id, at=datetime.now(UTC), **kw)


def test_a_packed_event_counts_every_report_it_carries(world: World) -> None:
    result = world.usage(packed_usage_event([now_record(f"p-{i}", app="chat") for i in range(25)]))

    assert result["recorded"] == 25 and result["quarantined"] == [] and result["duplicates"] == 0
    assert Decimal(result["spend"]["global"]) == 25 * COST
    assert build().engine.scope_totals("global").requests == 25


def test_one_bad_report_is_quarantined_alone_and_the_others_count(world: World) -> None:
    bad = {**packed_usage_event([now_record("p-bad")])["detail"]["reports"][0], "outputTokens": -5}
    event = packed_usage_event([now_record("p-1"), bad, "not a report", now_record("p-2")])

    result = world.usage(event)

    assert result["recorded"] == 2
    reasons = result["quarantined"]
    assert len(reasons) == 2
    assert reasons[0].startswith("usage batch reports[1]: outputTokens")
    assert reasons[1] == "usage batch reports[2]: not a usage report object"
    kept = build().engine.ledger.quarantined(datetime.now(UTC))
    assert any('"requestId": "p-bad"' in k["raw"] for k in kept)  # the bad report itself is kept, not lost
    assert build().engine.scope_totals("global").spend == 2 * COST


def test_a_packed_event_without_a_reports_list_is_quarantined_and_the_handler_does_not_fail(world: World) -> None:
    event = packed_usage_event([])
    event["detail"] = {"report": []}

    result = world.usage(event)

    assert result["recorded"] == 0 and result["quarantined"] == ["usage batch: reports: Field required"]


def test_a_request_counts_once_across_packed_and_single_events_and_retries(world: World) -> None:
    single = world.usage(usage_event(now_record("r-1")))
    packed = packed_usage_event([now_record("r-1"), now_record("r-2"), now_record("r-2")])

    first = world.usage(packed)
    retry = world.usage(packed)  # EventBridge delivers at least once
    later = world.usage(usage_event(now_record("r-2")))  # an old client's copy of a packed report
    rows = world.usage(rows_usage_event([now_record("r-1"), now_record("r-3")]))  # a newer client's copies

    assert single["recorded"] == 1
    assert first["recorded"] == 1 and first["duplicates"] + first["superseded"] == 2
    assert retry["recorded"] == 0 and retry["duplicates"] == 3
    assert later["recorded"] == 0 and later["duplicates"] == 1
    assert rows["recorded"] == 1 and rows["duplicates"] == 1
    assert build().engine.scope_totals("global").spend == 3 * COST


@pytest.fixture
def app_budgets(world: World, monkeypatch: pytest.MonkeyPatch) -> World:
    monkeypatch.setenv("GUARDRAIL_BUDGETS", json.dumps([{"scope": "global"}, {"scope": "app:*"}]))
    default_runtime.cache_clear()
    return world


def test_a_rows_event_counts_every_row_in_the_scopes_its_context_names(app_budgets: World) -> None:
    world = app_budgets
    records = [now_record(f"row-{i}", app="chat" if i % 3 else "search") for i in range(25)]
    event = rows_usage_event(records)
    assert len(event["detail"]["contexts"]) == 2  # what the rows share is sent once

    result = world.usage(event)

    assert result["recorded"] == 25 and result["quarantined"] == [] and result["duplicates"] == 0
    assert Decimal(result["spend"]["global"]) == 25 * COST
    assert build().engine.scope_totals("app:search").spend == 9 * COST
    assert build().engine.scope_totals("app:chat").spend == 16 * COST


def test_rows_are_read_by_their_column_names_so_a_newer_clients_extra_column_is_ignored(app_budgets: World) -> None:
    world = app_budgets
    columns = ("requestId", "extraColumn", "outputTokens", "context", *(c for c in ROWS[2:] if c != "outputTokens"))
    result = world.usage(rows_usage_event([now_record("col-1", app="chat"), now_record("col-2")], columns))

    assert result["recorded"] == 2 and result["quarantined"] == []
    assert build().engine.scope_totals("app:chat").spend == COST
    assert build().engine.scope_totals("global").spend == 2 * COST


def test_one_bad_row_is_quarantined_alone_with_its_context_and_the_others_count(world: World) -> None:
    event = rows_usage_event([now_record(f"r-{i}", app="chat") for i in range(6)])
    rows = event["detail"]["rows"]
    rows[1][ROWS.index("outputTokens")] = -5
    rows[2][ROWS.index("context")] = 7  # names no context
    rows[3] = rows[3][:4]  # too few values
    rows[4][ROWS.index("timestamp")] = 1e300  # not a time

    result = world.usage(event)

    assert result["recorded"] == 2  # r-0 and r-5
    reasons = result["quarantined"]
    assert [r.split(":")[0] for r in reasons] == [f"usage rows rows[{i}]" for i in (1, 2, 3, 4)]
    assert reasons[0].startswith("usage rows rows[1]: outputTokens")
    assert reasons[1] == "usage rows rows[2]: context 7 is not one of the event's 1 context objects"
    assert reasons[2] == "usage rows rows[3]: not a row of 11 values"
    assert reasons[3] == "usage rows rows[4]: timestamp 1e+300 is not a time (epoch seconds)"
    kept = [k["raw"] for k in build().engine.ledger.quarantined(datetime.now(UTC))]
    # What is kept says everything the row did: the detail it stands for, or the row and its context.
    assert any('"requestId": "r-1"' in k and '"app": "chat"' in k for k in kept)
    assert any('"r-4"' in k and '"app": "chat"' in k for k in kept)
    assert build().engine.scope_totals("global").spend == 2 * COST


def test_a_rows_event_without_its_columns_is_quarantined_and_the_handler_does_not_fail(world: World) -> None:
    event = rows_usage_event([now_record("r-1")])
    del event["detail"]["columns"]
    no_context = rows_usage_event([now_record("r-1")])
    no_context["detail"]["columns"][0] = "ctx"

    assert world.usage(event)["quarantined"] == ["usage rows: columns: Field required"]
    assert world.usage(no_context)["quarantined"] == ["usage rows: columns: Value error, no context column"]
    assert build().engine.scope_totals("global").spend == 0


def test_the_guarded_clients_reports_reach_the_handler_packed(
    world: World,
    bedrock: Bedrock,
    make_client: Callable[..., GuardedBedrockClient],
    usage_events: Callable[[], list[dict[str, Any]]],
) -> None:
    # A background client with a long linger: its three reports share one entry of one PutEvents.
    client = make_client(background=True, report_linger=3600)
    for i in range(3):
        bedrock.respond("converse", response("converse", f"req-packed-{i}"), expected_request("converse", SONNET))
        call(client, "converse")
    assert client.flush(30)

    (event,) = usage_events()  # through the EventBridge rule, as the usage function receives it
    assert event["detail-type"] == "Bedrock Usage Rows" and len(event_details(event)) == 3
    result = world.usage(event)

    assert result["recorded"] == 3 and result["quarantined"] == []
    assert build().engine.scope_totals("global").spend == 3 * USAGE_COST


def test_a_client_packing_one_report_per_event_still_reaches_the_handler(
    world: World,
    bedrock: Bedrock,
    make_client: Callable[..., GuardedBedrockClient],
    usage_events: Callable[[], list[dict[str, Any]]],
) -> None:
    client = make_client(report_packing=1)  # what a client must send to a stack older than issue 19
    bedrock.respond("converse", response("converse", "req-single"), expected_request("converse", SONNET))
    call(client, "converse")

    (event,) = usage_events()
    assert event["detail-type"] == "Bedrock Usage"
    assert world.usage(event)["recorded"] == 1
