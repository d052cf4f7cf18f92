"""Packed usage events (`Bedrock Usage Batch`, issue 19): one EventBridge entry carries many client
reports. The usage function counts each packed report exactly as it counts a `Bedrock Usage` event:
validated on its own (a bad one is quarantined alone, with its reason), deduplicated by request id
across packed events, single events and retries. The guarded client packs by default; its events reach
the handler through an EventBridge rule that hears both detail types."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from guardrail.client import GuardedBedrockClient
from guardrail.service.runtime import build
from tests.support.bedrock import SONNET, USAGE_COST, Bedrock, call, expected_request, response
from tests.support.factories import packed_usage_event, record, usage_event
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

    assert single["recorded"] == 1
    assert first["recorded"] == 1 and first["duplicates"] + first["superseded"] == 2
    assert retry["recorded"] == 0 and retry["duplicates"] == 3
    assert later["recorded"] == 0 and later["duplicates"] == 1
    assert build().engine.scope_totals("global").spend == 2 * COST


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
    assert event["detail-type"] == "Bedrock Usage Batch" and len(event["detail"]["reports"]) == 3
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
