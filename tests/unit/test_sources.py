"""Parsing invocation logs and usage events: bad records are quarantined with a reason, good ones count."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guardrail.core.models import UsageRecord
from guardrail.service.sources import RecordParser
from tests.support.common import load_event
from tests.support.factories import log_line, logs_event, record

parser = RecordParser(max_tokens_per_request=5_000_000)


def test_sample_subscription_event_zlib_decodes_to_three_records() -> None:
    result = parser.cloudwatch_logs_event(load_event("cloudwatch-logs-bedrock-invocations.json"))
    assert [r.request_id[-1] for r in result.records] == ["1", "2", "3"]
    first = result.records[0]
    assert (first.input_tokens, first.output_tokens, first.cache_read_tokens) == (1200, 350, 8000)
    assert first.metadata == {"app": "chat-api", "tenant": "acme"}
    assert result.records[2].cache_write_tokens == 25037
    assert not result.quarantined


@pytest.mark.parametrize("compression", ["gzip", "zlib"])
def test_both_compressions_decode(compression: str) -> None:
    event = logs_event([log_line(record("a")), log_line(record("b"))], compression=compression)
    assert [r.request_id for r in parser.cloudwatch_logs_event(event).records] == ["a", "b"]


BAD_LINES = {
    "not json": "this is not json {",
    "missing input": json.dumps({**json.loads(log_line(record("x"))), "input": None}),
    "missing request id": json.dumps({k: v for k, v in json.loads(log_line(record("x"))).items() if k != "requestId"}),
    "negative": log_line(record("x", input_tokens=-5)),
    "absurd": log_line(record("x", output_tokens=50_000_000)),
    "float tokens": log_line(record("x")).replace('"outputTokenCount": 100', '"outputTokenCount": 100.5'),
    "string tokens": log_line(record("x")).replace('"outputTokenCount": 100', '"outputTokenCount": "100"'),
}


@pytest.mark.parametrize("name", sorted(BAD_LINES))
def test_malformed_line_is_quarantined_and_good_lines_still_count(name: str) -> None:
    event = logs_event([log_line(record("good-1")), BAD_LINES[name], log_line(record("good-2"))])
    result = parser.cloudwatch_logs_event(event)
    assert [r.request_id for r in result.records] == ["good-1", "good-2"]
    assert len(result.quarantined) == 1
    q = result.quarantined[0]
    assert q.reason and q.raw == BAD_LINES[name][:8192]


def test_undecodable_subscription_event_is_quarantined() -> None:
    result = parser.cloudwatch_logs_event({"awslogs": {"data": base64.b64encode(b"plain").decode()}})
    assert not result.records
    assert "undecodable" in result.quarantined[0].reason


def test_control_message_is_ignored() -> None:
    import gzip

    payload = {
        "messageType": "CONTROL_MESSAGE",
        "owner": "CloudwatchLogs",
        "logGroup": "",
        "logStream": "",
        "subscriptionFilters": [],
        "logEvents": [{"id": "1", "timestamp": 0, "message": "CWL CONTROL"}],
    }
    event = {"awslogs": {"data": base64.b64encode(gzip.compress(json.dumps(payload).encode())).decode()}}
    result = parser.cloudwatch_logs_event(event)
    assert not result.records and not result.quarantined


def usage_event(**detail: object) -> dict[str, object]:
    base = {
        "requestId": "req-1",
        "timestamp": "2026-11-22T10:41:01Z",
        "modelId": "anthropic.claude-3-haiku-20240307-v1:0",
        "inputTokens": 10,
        "outputTokens": 5,
        "cacheReadInputTokens": 0,
        "cacheWriteInputTokens": 0,
        "metadata": {"app": "chat-api"},
    }
    return {"detail-type": "Bedrock Usage", "source": "guardrail.client", "detail": {**base, **detail}}


def test_usage_event_parses() -> None:
    result = parser.events([usage_event(partial=True)])
    (r,) = result.records
    assert (r.request_id, r.input_tokens, r.output_tokens, r.partial, r.source) == (
        "req-1",
        10,
        5,
        True,
        "event",
    )


def test_bad_usage_event_and_unknown_shape_are_quarantined() -> None:
    result = parser.events([usage_event(inputTokens=-1), {"hello": "world"}, usage_event(requestId="ok")])
    assert [r.request_id for r in result.records] == ["ok"]
    assert len(result.quarantined) == 2
    assert any("inputTokens" in q.reason for q in result.quarantined)
    assert any("not a log subscription" in q.reason for q in result.quarantined)


def logged(r: object = None, **changes: object) -> str:
    """An invocation log line for record `r` with top-level fields replaced or added."""
    doc = json.loads(log_line(r or record("x")))  # type: ignore[arg-type]
    doc.update(changes)
    return json.dumps(doc)


def test_failed_request_is_a_zero_cost_error_not_quarantined() -> None:
    throttled = logged(
        record("t1"),
        errorCode="ThrottlingException",
        input={"inputContentType": "application/json"},
        output={"outputContentType": "application/json"},
    )
    no_output = logged(record("t2"), errorCode="ValidationException", output=None)
    result = parser.cloudwatch_logs_event(logs_event([throttled, no_output, log_line(record("ok"))]))
    assert [r.request_id for r in result.records] == ["ok"]
    assert not result.quarantined
    assert [(f.request_id, f.error_code) for f in result.failed] == [
        ("t1", "ThrottlingException"),
        ("t2", "ValidationException"),
    ]


def test_missing_counts_without_error_code_stay_quarantined() -> None:
    line = logged(record("m"), input={"inputContentType": "application/json"})
    result = parser.cloudwatch_logs_event(logs_event([line]))
    assert not result.records and not result.failed
    assert result.quarantined[0].reason == "input.inputTokenCount: Field required"


@pytest.mark.parametrize(
    "model",
    ["amazon.nova-canvas-v1:0", "amazon.nova-reel-v1:1", "arn:aws:bedrock:us-east-1:123456789012:provisioned-model/p1"],
)
def test_models_billed_otherwise_are_counted_without_token_counts(model: str) -> None:
    line = logged(record("img", model=model), input={"inputContentType": "application/json"}, output={})
    result = parser.cloudwatch_logs_event(logs_event([line]))
    assert [(r.model_id, r.input_tokens, r.output_tokens) for r in result.records] == [(model, 0, 0)]


def test_one_hour_cache_writes_read_from_a_logged_converse_body() -> None:
    body = {"usage": {"cacheDetails": [{"ttl": "1h", "inputTokens": 20000}, {"ttl": "5m", "inputTokens": 10000}]}}
    line = logged(
        record("c", cache_write=30000),
        output={"outputContentType": "application/json", "outputTokenCount": 100, "outputBodyJson": body},
    )
    (r,) = parser.cloudwatch_logs_event(logs_event([line])).records
    assert (r.cache_write_tokens, r.cache_write_1h_tokens) == (30000, 20000)


def test_one_hour_cache_writes_read_from_a_logged_anthropic_body_and_bounded() -> None:
    body = {"usage": {"cache_creation": {"ephemeral_1h_input_tokens": 99999, "ephemeral_5m_input_tokens": 0}}}
    line = logged(
        record("c", cache_write=5000),
        output={"outputContentType": "application/json", "outputTokenCount": 100, "outputBodyJson": body},
    )
    (r,) = parser.cloudwatch_logs_event(logs_event([line])).records
    assert r.cache_write_1h_tokens == 5000  # never more than the writes the log counted


def test_without_a_body_cache_writes_are_five_minute_ones() -> None:
    (r,) = parser.cloudwatch_logs_event(logs_event([log_line(record("c", cache_write=5000))])).records
    assert r.cache_write_1h_tokens == 0


@pytest.mark.parametrize(
    ("changes", "tier", "latency"),
    [
        ({"performanceConfig": {"latency": "optimized"}}, "", True),
        ({"performanceConfig": {"latency": "standard"}}, "", False),
        ({"serviceTier": {"type": "priority"}}, "priority", False),
        ({"serviceTier": "flex"}, "flex", False),
        ({"serviceTier": {"type": "default"}}, "", False),
        (
            {"output": {"outputTokenCount": 100, "outputBodyJson": {"serviceTier": {"type": "priority"}}}},
            "priority",
            False,
        ),
    ],
)
def test_service_tier_and_latency_mode_when_the_record_names_them(
    changes: dict[str, object], tier: str, latency: bool
) -> None:
    (r,) = parser.cloudwatch_logs_event(logs_event([logged(record("s"), **changes)])).records
    assert (r.service_tier, r.latency_optimized) == (tier, latency)


def test_usage_event_carries_one_hour_writes_and_tier() -> None:
    from dataclasses import replace

    from guardrail.core.usage_event import UsageEventDetail, record_from_detail

    r = replace(record("e", cache_write=300), cache_write_1h_tokens=200, service_tier="flex", latency_optimized=True)
    back = record_from_detail(UsageEventDetail.from_record(r), "event")
    assert (back.cache_write_1h_tokens, back.service_tier, back.latency_optimized) == (200, "flex", True)


_texts = st.one_of(
    st.text(max_size=8),  # any code point, lone surrogates included
    st.text(alphabet=st.characters(codec="ascii"), min_size=120, max_size=135),  # around each limit
    st.text(alphabet=st.characters(codec="ascii"), min_size=505, max_size=520),
    st.text(alphabet=st.characters(codec="ascii"), min_size=1020, max_size=1030),
    st.text(alphabet="é", min_size=500, max_size=520),
    st.text(alphabet="x", min_size=2040, max_size=2060),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(_texts, min_size=4, max_size=4), st.dictionaries(_texts, _texts, max_size=3))
def test_the_ascii_fast_path_finds_the_same_text_problem(texts: list[str], metadata: dict[str, str]) -> None:
    from guardrail.service.sources import _first_text_problem, _text_problem

    request_id, model_id, region, caller = texts
    r = UsageRecord(
        request_id, datetime(2026, 11, 22, tzinfo=UTC), model_id, 1, 1, region=region, caller=caller, metadata=metadata
    )
    assert _text_problem(r) == _first_text_problem(r)
