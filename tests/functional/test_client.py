"""The guarded Bedrock client: flags before each call, exact usage reports after it.

Bedrock runtime is botocore's Stubber (requests and responses validated against the real service model;
stream events validated one by one against the event shapes). DynamoDB, EventBridge and SQS are moto.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from decimal import Decimal
from typing import Any

import boto3
import pytest

from guardrail import GuardrailShutdown
from guardrail.client import ClientOptions, GuardedBedrockClient
from guardrail.core.config import load_settings
from guardrail.core.models import Flag, Level
from guardrail.service.engine import Engine
from guardrail.store.flags import FlagStore
from tests.support.bedrock import (
    HAIKU,
    OPERATIONS,
    SMALL,
    SONNET,
    USAGE_COST,
    Bedrock,
    call,
    expected_request,
    parse_usage,
    request,
    response,
)
from tests.support.common import TABLE
from tests.support.factories import log_line, logs_event
from tests.support.usage_events import entry_details, event_details

# -- helpers -----------------------------------------------------------------------------------------


def set_flag(ddb: Any, scope: str, level: Level, **changes: Any) -> Flag:
    """Move a scope's flag the way the engine does (conditional write + audit entry)."""
    store = FlagStore(ddb, TABLE)
    before = store.get(scope)
    after = replace(before, level=level, version=before.version + 1, **changes)
    store.commit(before, after, actor="test", action=f"->{level.label}", reason=changes.get("reason", "test"))
    return after


# -- before the call: flags ------------------------------------------------------------------------------


@pytest.mark.parametrize("operation", OPERATIONS)
def test_throttle_downgrades_the_model_and_keeps_the_profile_prefix(
    operation: str, ddb: Any, bedrock: Bedrock, make_client: Callable[..., GuardedBedrockClient], caplog: Any
) -> None:
    # Given the global scope is throttled with Sonnet -> Haiku
    set_flag(
        ddb, "global", Level.THROTTLE, model_downgrades={"claude-sonnet": "claude-haiku"}, reason="day spend $10.20"
    )
    client = make_client()
    # Then Bedrock is called with Haiku 4.5 behind the same us. profile (Stubber checks the request)
    bedrock.respond(operation, response(operation, "req-throttle"), expected_request(operation, HAIKU))

    with caplog.at_level(logging.INFO, logger="guardrail.client"):
        resp = call(client, operation, SONNET)

    # And the response and the log say so
    assert resp["ResponseMetadata"]["Guardrail"] == {
        "requestedModelId": SONNET,
        "modelId": HAIKU,
        "scope": "global",
        "level": "throttle",
    }
    assert f"calling {HAIKU} instead of {SONNET}" in caplog.text
    bedrock.stubber.assert_no_pending_responses()


@pytest.mark.parametrize("operation", OPERATIONS)
def test_shutdown_raises_before_any_bedrock_call(
    operation: str, ddb: Any, bedrock: Bedrock, make_client: Callable[..., GuardedBedrockClient], usage_events: Any
) -> None:
    # Given the app's scope is shut down (no Bedrock response is stubbed: a call would fail the Stubber)
    set_flag(ddb, "app:chat-api", Level.SHUTDOWN, reason="day spend $25.40 reached the shutdown threshold $25")
    client = make_client(
        settings={
            "budgets": [
                {"scope": "global", "thresholds": "alert=5,throttle=10,shutdown=25"},
                {"scope": "app:*", "thresholds": "alert=1,throttle=2,shutdown=5"},
            ]
        }
    )

    with pytest.raises(GuardrailShutdown) as raised:
        getattr(client, operation)(**request(operation, SONNET))

    # Then the error names the scope, level, reason and the reset command; nothing was called or reported
    err = raised.value
    assert (err.scope, err.level) == ("app:chat-api", "shutdown")
    assert "reached the shutdown threshold $25" in err.reason
    assert err.reset_command.startswith("guardrail reset --scope app:chat-api --reason")
    assert "guardrail reset --scope app:chat-api" in str(err)
    bedrock.stubber.assert_no_pending_responses()
    assert usage_events() == []


@pytest.mark.parametrize("operation", OPERATIONS)
def test_bedrock_throttling_exception_passes_through_unchanged(
    operation: str, bedrock: Bedrock, make_client: Callable[..., GuardedBedrockClient], usage_events: Any
) -> None:
    client = make_client()
    bedrock.stubber.add_client_error(
        operation,
        service_error_code="ThrottlingException",
        service_message="Too many requests, please wait before trying again.",
        http_status_code=429,
        expected_params=expected_request(operation, SONNET),
    )

    with pytest.raises(bedrock.client.exceptions.ThrottlingException) as raised:
        getattr(client, operation)(**request(operation, SONNET))

    # The caller's retry logic sees Bedrock's own error; nothing is charged or reported
    assert raised.value.response["Error"]["Code"] == "ThrottlingException"
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 429
    assert "Too many requests" in str(raised.value)
    assert usage_events() == []
    key = client._windows(client._scopes(client.metadata)).keys[0]
    assert client.spend.spend(key) == 0


# -- after the call: usage ---------------------------------------------------------------------------------


@pytest.mark.parametrize("operation", OPERATIONS)
def test_usage_with_cache_tokens_is_priced_exactly_and_reported(
    operation: str, bedrock: Bedrock, make_client: Callable[..., GuardedBedrockClient], usage_events: Any
) -> None:
    client = make_client()
    bedrock.respond(operation, response(operation, f"req-{operation}"), expected_request(operation, SONNET))

    resp = call(client, operation)

    # The caller gets Bedrock's answer untouched
    if operation == "converse":
        assert resp["output"]["message"]["content"][0]["text"] == "Spend doubled at 10:41."
    elif operation == "invoke_model":
        assert resp["text"] == "Spend doubled at 10:41."
    else:
        assert len(resp["events"]) in (6, 7)
    # One usage event (`Bedrock Usage Rows` of one report: it went alone), in the schema the usage
    # handler ingests, with the cache tokens
    (event,) = usage_events()
    assert (event["source"], event["detail-type"]) == ("guardrail.client", "Bedrock Usage Rows")
    assert len(event_details(event)) == 1
    (record,) = parse_usage([event])
    assert record.request_id == f"req-{operation}"  # Bedrock's request id: dedupes with the invocation log
    assert (record.input_tokens, record.output_tokens) == (3, 400)
    assert (record.cache_read_tokens, record.cache_write_tokens) == (0, 25037)
    assert record.metadata == {"app": "chat-api"}
    assert record.model_id == SONNET and not record.partial
    # Priced exactly, and counted at once by this process's own accounting
    assert client.pricer.price(record).cost == USAGE_COST
    key = client._windows(client._scopes(client.metadata)).keys[0]
    assert client.spend.spend(key) == USAGE_COST


def test_cache_read_tokens_are_priced_at_the_cache_read_rate(
    bedrock: Bedrock, make_client: Callable[..., GuardedBedrockClient], usage_events: Any
) -> None:
    client = make_client()
    usage = {"input": 12, "output": 250, "cache_read": 25037, "cache_write": 0}
    bedrock.respond("converse", response("converse", "req-read", usage), expected_request("converse", SONNET))

    call(client, "converse")

    (record,) = parse_usage(usage_events())
    # (12*3.3 + 250*16.5 + 25037*0.33) / 1e6
    assert client.pricer.price(record).cost == Decimal("0.01242681")


@pytest.mark.parametrize("operation", ["converse_stream", "invoke_model_with_response_stream"])
def test_an_abandoned_stream_reports_the_tokens_it_saw_marked_partial(
    operation: str, bedrock: Bedrock, make_client: Callable[..., GuardedBedrockClient], usage_events: Any
) -> None:
    client = make_client()
    bedrock.respond(operation, response(operation, "req-abandoned"), expected_request(operation, SONNET))

    # The caller reads the first text delta and walks away
    resp = getattr(client, operation)(**request(operation, SONNET))
    stream = resp["stream" if operation == "converse_stream" else "body"]
    for event in stream:
        if "contentBlockDelta" in event or b"content_block_delta" in event.get("chunk", {}).get("bytes", b""):
            break
    del event, stream, resp  # dropped: the client reports what it saw and closes the connection

    (record,) = parse_usage(usage_events())
    assert record.partial and record.request_id == "req-abandoned"
    assert record.output_tokens >= 1
    if operation == "invoke_model_with_response_stream":
        # message_start already told the exact input and cache counts
        assert (record.input_tokens, record.cache_write_tokens) == (3, 25037)
    else:
        assert record.input_tokens > 0  # estimated from the request: never reported as $0
    assert bedrock.streams[0].closed


def test_a_stream_read_to_the_end_is_reported_once_and_not_partial(
    bedrock: Bedrock, make_client: Callable[..., GuardedBedrockClient], usage_events: Any
) -> None:
    client = make_client()
    bedrock.respond(
        "converse_stream", response("converse_stream", "req-full"), expected_request("converse_stream", SONNET)
    )

    resp = client.converse_stream(**request("converse_stream", SONNET))  # type: ignore[arg-type]
    events = list(resp["stream"])
    resp["stream"].close()  # closing after the end must not report again

    assert events[-1]["metadata"]["usage"]["cacheWriteInputTokens"] == 25037
    (record,) = parse_usage(usage_events())
    assert not record.partial


def test_client_event_and_invocation_log_of_one_request_count_once(
    ddb: Any, bedrock: Bedrock, make_client: Callable[..., GuardedBedrockClient], usage_events: Any
) -> None:
    client = make_client()
    bedrock.respond("converse", response("converse", "req-both"), expected_request("converse", SONNET))
    call(client, "converse")
    engine = Engine(load_settings(table_name=TABLE), dynamodb=ddb)

    # The usage handler ingests the client's event, then the invocation log of the same request arrives
    first = engine.ingest_events(usage_events())
    (record,) = first.recorded
    later = engine.ingest_events([logs_event([log_line(replace(record.record, source="invocation-log"))])])

    # The authoritative copy replaces the client's (same tokens: the spend does not move).
    assert later.corrected == ["req-both"] and not later.duplicates
    assert engine.scope_totals("global").spend == USAGE_COST


# -- local accounting ----------------------------------------------------------------------------------------


def test_direct_ledger_write_stops_the_process_as_soon_as_the_total_crosses(
    ddb: Any, bedrock: Bedrock, make_client: Callable[..., GuardedBedrockClient]
) -> None:
    # Given a $0.20 shutdown threshold and a ledger-writing client
    client = make_client(settings={"thresholds": "alert=0.05,throttle=0.2,shutdown=0.2"}, report="ledger")
    bedrock.respond("converse", response("converse", "req-1"), expected_request("converse", SONNET))
    bedrock.respond("converse", response("converse", "req-2"), expected_request("converse", SONNET))

    call(client, "converse")  # $0.109887525: the ledger says alert
    call(client, "converse")  # $0.21977505: the ledger says shutdown, and the flag moved

    # Then the very next call is refused without calling Bedrock
    with pytest.raises(GuardrailShutdown) as raised:
        client.converse(**request("converse", SONNET))  # type: ignore[arg-type]
    assert raised.value.scope == "global"
    assert FlagStore(ddb, TABLE).get("global").level is Level.SHUTDOWN
    engine = Engine(load_settings(table_name=TABLE), dynamodb=ddb)
    assert engine.scope_totals("global").spend == 2 * USAGE_COST
    bedrock.stubber.assert_no_pending_responses()


def test_events_mode_adds_unreported_spend_to_the_last_known_total(
    bedrock: Bedrock, ddb: Any, make_client: Callable[..., GuardedBedrockClient], usage_events: Any
) -> None:
    # Given other processes already spent $0.15 of a $0.20 shutdown threshold
    settings = load_settings(table_name=TABLE, thresholds="alert=0.05,throttle=0.2,shutdown=0.2")
    Engine(settings, dynamodb=ddb).ingest(
        parse_usage([{"detail-type": "Bedrock Usage", "detail": _detail("other-process", cost_tokens=9091)}])
    )
    client = make_client(settings={"thresholds": "alert=0.05,throttle=0.2,shutdown=0.2"}, report="events")
    bedrock.respond("converse", response("converse", "req-mine"), expected_request("converse", SONNET))

    # When this process spends $0.11 (its event is sent, but not yet ingested: the flag is still normal)
    call(client, "converse")
    assert FlagStore(ddb, TABLE).get("global").level is Level.ALERT

    # Then it stops itself: $0.15 known + $0.11 of its own >= $0.20
    with pytest.raises(GuardrailShutdown) as raised:
        client.converse(**request("converse", SONNET))  # type: ignore[arg-type]
    assert "own accounting" in raised.value.reason
    assert len(usage_events()) == 1
    bedrock.stubber.assert_no_pending_responses()


def _detail(request_id: str, *, cost_tokens: int) -> dict[str, Any]:
    # 9,091 output tokens of us. Sonnet 4.5 = $0.1500015
    return {
        "requestId": request_id,
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "modelId": SONNET,
        "inputTokens": 0,
        "outputTokens": cost_tokens,
    }


# -- concurrency and outages -----------------------------------------------------------------------------------


class FakeTimer:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class CountingEvents:
    """An EventBridge client that only counts the usage events put on it, and the reports they carry."""

    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []
        self.reports: list[dict[str, Any]] = []

    def put_events(self, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        self.entries.extend(Entries)
        self.reports += [r for e in Entries for r in entry_details(e)]
        return {"FailedEntryCount": 0, "Entries": [{"EventId": str(i)} for i in range(len(Entries))]}


def test_64_threads_read_the_flag_store_once_per_ttl(ddb: Any, bedrock: Bedrock) -> None:
    reads: list[str] = []
    ddb.meta.events.register("before-call.dynamodb.BatchGetItem", lambda **_: reads.append("read"))
    timer = FakeTimer()
    events = CountingEvents()
    client = GuardedBedrockClient(
        bedrock.client,
        metadata={"app": "chat-api"},
        settings=load_settings(table_name=TABLE),
        options=ClientOptions(flag_ttl=1.0, flag_read_timeout=30.0),  # wall time: never the limit here
        dynamodb=ddb,
        events=events,  # type: ignore[arg-type]
        timer=timer,
    )
    calls_per_thread = 5
    for i in range(2 * 64 * calls_per_thread):
        bedrock.stubber.add_response("converse", response("converse", f"req-{i}", SMALL), None)

    def burst() -> None:
        barrier = threading.Barrier(64)
        errors: list[BaseException] = []

        def worker() -> None:
            try:
                barrier.wait()
                for _ in range(calls_per_thread):
                    client.converse(**request("converse", SONNET))  # type: ignore[arg-type]
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=worker) for _ in range(64)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []

    burst()  # 320 calls within one TTL
    assert len(reads) == 1
    timer.now += 1.001  # the TTL passes
    burst()
    assert len(reads) == 2
    assert client.flush()
    assert len(events.reports) == 2 * 64 * calls_per_thread  # every call still reported


class BrokenSource:
    def __init__(self, inner: Any = None) -> None:
        self.inner = inner
        self.broken = False
        self.hang = threading.Event()

    def read(self, keys: Any) -> Any:
        if self.broken == "hang":
            self.hang.wait(10)
        if self.broken:
            raise ConnectionError("Could not connect to the endpoint URL")
        return self.inner.read(keys)


@pytest.mark.parametrize("fail_mode", ["open", "closed"])
def test_store_outage_serves_the_last_known_flag_then_fails_by_configuration(
    fail_mode: str, ddb: Any, bedrock: Bedrock, caplog: Any
) -> None:
    from guardrail.client.flag_cache import FlagCache
    from guardrail.store.flag_reader import DynamoFlagSource

    set_flag(ddb, "global", Level.THROTTLE, model_downgrades={"claude-sonnet": "claude-haiku"})
    timer = FakeTimer()
    source = BrokenSource(DynamoFlagSource(ddb, TABLE))
    # read_timeout is wall time: generous, so a slow moto read on a busy machine is not taken for an outage
    cache = FlagCache(source, ttl=1.0, max_stale=60.0, fail_mode=fail_mode, read_timeout=30.0, timer=timer)  # type: ignore[arg-type]
    client = GuardedBedrockClient(
        bedrock.client,
        settings=load_settings(table_name=TABLE),
        options=ClientOptions(background=False, tag_requests=False),
        flag_cache=cache,
        events=boto3.client("events", region_name="us-east-1"),
        timer=timer,
    )
    bedrock.respond("converse", response("converse", "r1"), request("converse", HAIKU))
    call(client, "converse")  # a good read: throttle is known

    # When the store goes away, the last known flag (throttle) is still enforced within max_stale
    source.broken = True
    timer.now += 30
    bedrock.respond("converse", response("converse", "r2"), request("converse", HAIKU))
    with caplog.at_level(logging.ERROR, logger="guardrail.client"):
        assert call(client, "converse")["ResponseMetadata"]["Guardrail"]["modelId"] == HAIKU
    assert "using the last known flag of global (throttle" in caplog.text

    # After max_stale the client fails open (loudly) or closed, as configured
    timer.now += 61
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="guardrail.client"):
        if fail_mode == "open":
            bedrock.respond("converse", response("converse", "r3"), request("converse", SONNET))
            call(client, "converse")
            assert "FAILING OPEN" in caplog.text
        else:
            with pytest.raises(GuardrailShutdown) as raised:
                client.converse(**request("converse", SONNET))  # type: ignore[arg-type]
            assert "fail_mode='open'" in raised.value.reset_command
            assert "FAILING CLOSED" in caplog.text
    bedrock.stubber.assert_no_pending_responses()


def test_a_client_that_saw_shutdown_stays_closed_through_an_outage_even_failing_open(
    ddb: Any, bedrock: Bedrock, caplog: Any
) -> None:
    from guardrail.client import guard
    from guardrail.client.flag_cache import FlagCache
    from guardrail.store.flag_reader import DynamoFlagSource

    shut = set_flag(ddb, "global", Level.SHUTDOWN)
    timer = FakeTimer()
    source = BrokenSource(DynamoFlagSource(ddb, TABLE))
    # The outage is BrokenSource raising, not a slow read: a wall-clock read timeout has no part in it.
    cache = FlagCache(source, ttl=1.0, max_stale=300.0, fail_mode="open", read_timeout=30.0, timer=timer)  # type: ignore[arg-type]
    client = guard(
        bedrock.client,
        settings=load_settings(table_name=TABLE),
        options=ClientOptions(background=False, tag_requests=False),
        flag_cache=cache,
        events=boto3.client("events", region_name="us-east-1"),
        timer=timer,
    )
    with pytest.raises(GuardrailShutdown):
        client.converse(**request("converse", SONNET))  # type: ignore[arg-type]

    source.broken = True
    for elapsed in (30, 301, 3600):  # within max_stale, just past it, an hour later
        timer.now += elapsed
        with caplog.at_level(logging.ERROR, logger="guardrail.client"), pytest.raises(GuardrailShutdown):
            client.converse(**request("converse", SONNET))  # type: ignore[arg-type]
    assert "stays SHUTDOWN" in caplog.text and "FAILING OPEN" not in caplog.text

    # The store answers again with a newer flag (a reset): calls proceed at once.
    FlagStore(ddb, TABLE).commit(
        shut, replace(shut, level=Level.NORMAL, version=shut.version + 1), actor="alice", action="reset", reason="x"
    )
    source.broken = False
    timer.now += 2
    bedrock.respond("converse", response("converse", "after"), request("converse", SONNET))
    call(client, "converse")
    bedrock.stubber.assert_no_pending_responses()


def test_a_hanging_flag_store_never_hangs_the_caller(ddb: Any, bedrock: Bedrock) -> None:
    from guardrail.client.flag_cache import FlagCache
    from guardrail.store.flag_reader import DynamoFlagSource

    source = BrokenSource(DynamoFlagSource(ddb, TABLE))
    source.broken = "hang"  # type: ignore[assignment]
    cache = FlagCache(source, read_timeout=0.2)  # type: ignore[arg-type]
    client = GuardedBedrockClient(
        bedrock.client,
        settings=load_settings(table_name=TABLE),
        options=ClientOptions(background=False, tag_requests=False),
        flag_cache=cache,
        events=boto3.client("events", region_name="us-east-1"),
    )
    bedrock.respond("converse", response("converse", "r1"), request("converse", SONNET))

    started = time.monotonic()
    call(client, "converse")  # no flag ever read: fails open after the read timeout

    assert time.monotonic() - started < 5.0  # the store hangs forever: returning at all proves the timeout
    source.hang.set()


def test_service_tier_and_one_hour_writes_named_by_the_response_are_priced_and_reported(
    bedrock: Bedrock, make_client: Callable[..., GuardedBedrockClient], usage_events: Any
) -> None:
    client = make_client()
    usage = {"input": 1000, "output": 1000, "cache_read": 0, "cache_write": 3000}
    resp = response("converse", "req-tier", usage)
    resp["serviceTier"] = {"type": "priority"}
    resp["usage"]["cacheDetails"] = [{"ttl": "1h", "inputTokens": 1000}, {"ttl": "5m", "inputTokens": 2000}]
    bedrock.respond("converse", resp, expected_request("converse", SONNET))

    call(client, "converse")

    (record,) = parse_usage(usage_events())
    assert (record.service_tier, record.cache_write_1h_tokens) == ("priority", 1000)
    # Sonnet 4.5 us. x1.75: (1000*3.3 + 1000*16.5 + 2000*4.125 + 1000*6.6) * 1.75 / 1e6
    cost = (
        Decimal("1.75")
        * (1000 * Decimal("3.3") + 1000 * Decimal("16.5") + 2000 * Decimal("4.125") + 1000 * Decimal("6.6"))
        / 10**6
    )
    assert client.pricer.price(record).cost == cost
    key = client._windows(client._scopes(client.metadata)).keys[0]
    assert client.spend.spend(key) == cost
