"""Parsing invocation logs and usage events: bad records are quarantined with a reason, good ones count."""

from __future__ import annotations

import base64
import json

import pytest

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
