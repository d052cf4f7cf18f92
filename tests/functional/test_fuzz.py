"""Property-based fuzz of every handler with malformed, truncated, oversized and hostile events.

Every input ends in success, a quarantined record with a reason (usage), "nothing changed" (alarm) or
a refusal (reset); no handler raises; nothing hostile reaches Slack unescaped; the Slack webhook URL
never appears in a log line, a metric or a response.
"""

from __future__ import annotations

import base64
import gzip
import json
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import handlers.alarm
import handlers.reset
import handlers.schedule
import handlers.usage
from guardrail.service.observability import logger
from guardrail.service.runtime import default_runtime
from tests.support.common import Output, load_event
from tests.support.world import WEBHOOK, World

FUZZ = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
HOSTILE_ALARM = "<!channel> <https://evil.example|click> & *bold*"
MARKUP = st.sampled_from(
    [
        "<script>alert(1)</script>",
        "<!channel>",
        "<@U123|admin>",
        "<https://evil.example|reset now>",
        "&amp;&lt;",
        "*bold* _it_ `code`",
        "\u202etxt.exe",
        "\x00\x1f",
        "💸" * 50,
    ]
)
TEXT = st.one_of(st.text(max_size=40), MARKUP, st.text(min_size=1000, max_size=3000))
NUMBER = st.one_of(
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, 1, -1, 5_000_000, 5_000_001, 10**20, "100", "1e3", True, None]),
)
SCALAR = st.one_of(st.none(), st.booleans(), NUMBER, TEXT)
JSON = st.recursive(
    SCALAR,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=5)),
    max_leaves=12,
)
TIMESTAMP = st.one_of(
    st.just(datetime.now(UTC).isoformat()),
    st.datetimes(timezones=st.just(UTC)).map(lambda d: d.isoformat()),
    st.datetimes().map(lambda d: d.isoformat()),  # no time zone
    st.sampled_from(["0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "yesterday", "", "2026-13-45T99:99:99Z"]),
)
MODEL = st.one_of(
    st.sampled_from(
        [
            "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
            "anthropic.claude-3-haiku-20240307-v1:0",
            "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc",
            "arn:aws:bedrock:us-east-1::foundation-model/",
            "acme.<b>new</b>-model",
        ]
    ),
    TEXT,
)


def valid_line(i: int) -> dict[str, Any]:
    return {
        "schemaType": "ModelInvocationLog",
        "timestamp": datetime.now(UTC).isoformat(),
        "requestId": f"fuzz-{i}",
        "modelId": "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
        "identity": {"arn": "arn:aws:sts::123456789012:assumed-role/app/app"},
        "input": {"inputTokenCount": 1_000_000, "cacheReadInputTokenCount": 0, "cacheWriteInputTokenCount": 0},
        "output": {"outputTokenCount": 100_000},
        "requestMetadata": {"app": "<script>alert(1)</script>", "tenant": "acme & co"},
    }


@st.composite
def log_record(draw: st.DrawFn) -> Any:
    """A log line: valid, with one field replaced by something hostile, or not JSON at all."""
    line = valid_line(draw(st.integers(0, 10**6)))
    choice = draw(st.integers(0, 9))
    if choice == 0:
        return draw(st.one_of(TEXT, st.just("{"), st.just("null"), st.just("[]")))
    if choice == 1:
        return json.dumps(draw(JSON))
    if choice >= 7:  # some valid lines, so thresholds (and Slack) get crossed
        line["requestMetadata"] = {"app": draw(MARKUP), draw(st.text(min_size=1, max_size=8)): draw(TEXT)}
        return json.dumps(line)
    path = draw(
        st.sampled_from(
            [
                ("requestId",),
                ("timestamp",),
                ("modelId",),
                ("input", "inputTokenCount"),
                ("input", "cacheReadInputTokenCount"),
                ("output", "outputTokenCount"),
                ("requestMetadata",),
                ("identity",),
                ("input",),
            ]
        )
    )
    value = draw(
        st.one_of(JSON, NUMBER, TIMESTAMP if path == ("timestamp",) else MODEL if path == ("modelId",) else TEXT)
    )
    target: Any = line
    for key in path[:-1]:
        target = target[key]
    if draw(st.booleans()) and value is None:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return json.dumps(line, ensure_ascii=draw(st.booleans()))


@st.composite
def logs_event(draw: st.DrawFn) -> Any:
    lines = draw(st.lists(log_record(), max_size=8))
    payload = {
        "messageType": draw(st.sampled_from(["DATA_MESSAGE", "DATA_MESSAGE", "CONTROL_MESSAGE", "OTHER"])),
        "owner": "123456789012",
        "logGroup": "/aws/bedrock/modelinvocations",
        "logStream": "s",
        "subscriptionFilters": ["f"],
        "logEvents": [{"id": str(i), "timestamp": 0, "message": m} for i, m in enumerate(lines)],
    }
    raw = json.dumps(payload).encode()
    how = draw(st.integers(0, 6))
    if how == 0:
        data = zlib.compress(raw)
    elif how == 1:
        data = gzip.compress(raw)[: draw(st.integers(0, 40))]  # truncated
    elif how == 2:
        data = raw  # not compressed
    elif how == 3:
        return {"awslogs": {"data": draw(st.one_of(TEXT, NUMBER, JSON))}}
    elif how == 4:
        return {"awslogs": draw(JSON)}
    else:
        data = gzip.compress(raw)
    return {"awslogs": {"data": base64.b64encode(data).decode()}}


@st.composite
def usage_event(draw: st.DrawFn) -> Any:
    detail: Any = {
        "requestId": f"ev-{draw(st.integers(0, 10**6))}",
        "timestamp": datetime.now(UTC).isoformat(),
        "modelId": "anthropic.claude-3-haiku-20240307-v1:0",
        "inputTokens": 10,
        "outputTokens": 10,
        "metadata": {"app": "<b>x</b>"},
    }
    key = draw(st.sampled_from([*detail, "partial", "caller", "cacheReadInputTokens", None]))
    if key is None:
        detail = draw(JSON)
    else:
        detail[key] = draw(st.one_of(JSON, NUMBER, TEXT, TIMESTAMP))
    packing = draw(st.integers(0, 3))
    if packing == 3:
        return {"source": "guardrail.client", "detail-type": "Bedrock Usage Rows", "detail": draw(rows_detail())}
    if packing == 0:
        return {"source": "guardrail.client", "detail-type": "Bedrock Usage", "detail": detail}
    # A packed event: the fuzzed report beside a good one, or a fuzzed `reports` itself.
    good = {
        "requestId": f"ev-good-{draw(st.integers(0, 10**6))}",
        "timestamp": datetime.now(UTC).isoformat(),
        "modelId": "anthropic.claude-3-haiku-20240307-v1:0",
        "inputTokens": 1,
        "outputTokens": 1,
    }
    if packing == 1 and isinstance(detail, dict):
        packed: Any = {"reports": [detail, good] if draw(st.booleans()) else [good, detail]}
    else:
        packed = {"reports": draw(JSON)} if draw(st.booleans()) else draw(JSON)
    return {"source": "guardrail.client", "detail-type": "Bedrock Usage Batch", "detail": packed}


@st.composite
def rows_detail(draw: st.DrawFn) -> Any:
    """A `Bedrock Usage Rows` detail: a good row beside a fuzzed one, under a context that may be fuzzed too, or
    a fuzzed frame."""
    columns: Any = ["context", "requestId", "timestamp", "inputTokens", "outputTokens", "partial"]
    good = [0, f"ev-row-{draw(st.integers(0, 10**6))}", datetime.now(UTC).timestamp(), 1, 1, False]
    value = st.one_of(JSON, NUMBER, TEXT, TIMESTAMP)
    bad = draw(st.one_of(st.lists(value, min_size=6, max_size=6).map(lambda row: [0, *row[1:]]), JSON))
    context: Any = {"modelId": "anthropic.claude-3-haiku-20240307-v1:0", "metadata": {"app": "<b>x</b>"}}
    if draw(st.booleans()):
        context[draw(st.sampled_from(["modelId", "metadata", "caller", "region"]))] = draw(value)
    rows = [good, bad] if draw(st.booleans()) else [bad, good]
    frame: Any = {"columns": columns, "contexts": [context], "rows": rows}
    key = draw(st.sampled_from([None, None, "columns", "contexts", "rows"]))
    if key is not None:
        frame[key] = draw(JSON)
    return frame if draw(st.integers(0, 9)) else draw(JSON)


@st.composite
def alarm_event(draw: st.DrawFn) -> Any:
    name = draw(st.one_of(st.just(HOSTILE_ALARM), st.just("TotalNetworkTrafficTooHigh"), TEXT, JSON))
    state = draw(st.one_of(st.sampled_from(["ALARM", "OK", "INSUFFICIENT_DATA", "alarm", ""]), JSON))
    shape = draw(st.integers(0, 4))
    if shape == 0:
        event = load_event("eventbridge-alarm-state-change-single-metric.json")
        event["detail"]["alarmName"] = name
        event["detail"]["state"]["value"] = state
        if draw(st.booleans()):
            event["detail"]["configuration"] = draw(JSON)
        return event
    if shape == 1:
        event = load_event("powertools-cloudWatchAlarmEventCompositeMetric.json")
        event["alarmData"]["alarmName"] = name
        event["alarmData"]["state"] = draw(st.one_of(st.just({"value": state}), JSON))
        return event
    if shape == 2:
        event = load_event("sns-cloudwatch-alarm-notification.json")
        message = json.loads(event["Records"][0]["Sns"]["Message"])
        message["AlarmName"] = name
        message["NewStateValue"] = state
        text = json.dumps(message)
        event["Records"][0]["Sns"]["Message"] = draw(st.sampled_from([text, text[: len(text) // 2], "not json", ""]))
        if draw(st.booleans()):
            event["Records"].append(draw(JSON))
        return event
    if shape == 3:
        return {"Records": draw(JSON)}
    return draw(JSON)


RESET = st.one_of(
    JSON,
    st.fixed_dictionaries(
        {
            "scope": st.one_of(st.just("global"), TEXT, JSON),
            "reason": st.one_of(TEXT, JSON),
            "actor": st.one_of(TEXT, JSON),
        },
        optional={"rearm": st.one_of(st.just("from-zero"), TEXT), "snooze_until": TIMESTAMP, "extra": JSON},
    ),
)


@pytest.fixture
def world(ddb: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Iterator[World]:
    monkeypatch.setenv(
        "GUARDRAIL_ALARM_LEVELS", json.dumps({HOSTILE_ALARM: "alert", "TotalNetworkTrafficTooHigh": "throttle"})
    )
    w = World(monkeypatch)
    monkeypatch.setenv(
        "GUARDRAIL_ALARM_LEVELS", json.dumps({HOSTILE_ALARM: "alert", "TotalNetworkTrafficTooHigh": "throttle"})
    )
    monkeypatch.setenv(
        "GUARDRAIL_BUDGETS", json.dumps([{"scope": "global", "targets": ["chat-api"]}, {"scope": "app:*"}])
    )
    default_runtime.cache_clear()
    rt = default_runtime()
    rt.engine.ledger.sleep = lambda _: None
    assert rt.effects.notifier is not None
    rt.effects.notifier._sleep = lambda _: None
    sink = Output(capsys)
    w.sink = sink  # type: ignore[attr-defined]
    yield w
    logger._logger.removeHandler(sink.handler)
    default_runtime.cache_clear()


def strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from strings(k)
            yield from strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from strings(v)


def check_outputs(world: World, response: Any) -> None:
    text = world.sink.drain()  # type: ignore[attr-defined]
    assert WEBHOOK not in text and WEBHOOK not in json.dumps(response, default=str)
    for payload in world.slack:
        for s in strings(payload):
            assert "<" not in s and ">" not in s, s  # every outside text escaped; we add no markup either
    world.slack.clear()


@FUZZ
@given(event=st.one_of(logs_event(), usage_event(), JSON))
def test_usage_handler_never_raises_and_quarantines_what_it_cannot_count(world: World, event: Any) -> None:
    result = handlers.usage.handler(event, world.ctx)
    lines = _lines(event)
    accounted = result["recorded"] + result["duplicates"] + len(result["quarantined"])
    if lines is not None:
        assert accounted == lines, result  # every log line ends counted, a duplicate, or quarantined
    elif _packed(event) is not None:
        assert accounted == _packed(event), result  # every packed report ends counted, a duplicate or quarantined
    elif not (isinstance(event, dict) and "awslogs" in event):
        assert accounted == 1, result  # a usage event or garbage: one record, one outcome
    assert all(isinstance(r, str) and r for r in result["quarantined"])
    check_outputs(world, result)


def _packed(event: Any) -> int | None:
    """Reports in a well-formed `Bedrock Usage Batch` or `Bedrock Usage Rows` event (None if it is not one)."""
    kind = event.get("detail-type") if isinstance(event, dict) else None
    detail = event.get("detail") if isinstance(event, dict) else None
    if not isinstance(detail, dict):
        return None
    if kind == "Bedrock Usage Batch":
        reports = detail.get("reports")
        return len(reports) if isinstance(reports, list) else None
    if kind == "Bedrock Usage Rows":
        columns, rows = detail.get("columns"), detail.get("rows")
        framed = (
            isinstance(columns, list)
            and all(isinstance(c, str) for c in columns)
            and {"context", "requestId"} <= set(columns)
            and len(set(columns)) == len(columns)
            and isinstance(detail.get("contexts"), list)
            and isinstance(rows, list)
        )
        return len(rows) if framed else None
    return None


def _lines(event: Any) -> int | None:
    """Log events in a well-formed subscription event (None if the envelope itself is broken)."""
    try:
        data = json.loads(zlib.decompress(base64.b64decode(event["awslogs"]["data"]), zlib.MAX_WBITS | 32))
    except Exception:
        return None
    if data.get("messageType") != "DATA_MESSAGE":
        return 0
    return len(data["logEvents"])


@FUZZ
@given(event=alarm_event())
def test_alarm_handler_never_raises_and_unknown_input_changes_nothing(world: World, event: Any) -> None:
    before = world.flag()
    result = handlers.alarm.handler(event, world.ctx)
    assert isinstance(result["changed"], bool)
    if not result["changed"]:
        assert world.flag().level == before.level
    check_outputs(world, result)


@FUZZ
@given(event=RESET)
def test_reset_handler_refuses_bad_requests_and_records_the_actor(world: World, event: Any) -> None:
    result = handlers.reset.handler(event, world.ctx)
    if result["ok"]:
        latest = world.flag()
        assert isinstance(event, dict) and event["scope"] == "global" and latest.level.label == "normal"
        (entry, *_) = default_runtime().engine.flags.history("global", limit=1)
        assert entry.actor == "unverified:direct-invoke"  # a direct invoke: the claimed actor is only a note
        assert entry.reason == f"{event['reason'].strip()} [note: claimed actor {event['actor'].strip()}]"
    else:
        assert result.get("error") or result.get("failures"), result
    check_outputs(world, result)


@FUZZ
@given(event=JSON)
def test_schedule_handler_ignores_whatever_event_it_gets(world: World, event: Any) -> None:
    result = handlers.schedule.handler(event, world.ctx)
    assert result["failures"] == []
    check_outputs(world, result)


def test_hostile_alarm_name_and_metadata_reach_slack_escaped(world: World) -> None:
    event = load_event("eventbridge-alarm-state-change-single-metric.json")
    event["detail"]["alarmName"] = HOSTILE_ALARM
    event["detail"]["state"]["value"] = "ALARM"
    assert handlers.alarm.handler(event, world.ctx)["changed"]
    line = valid_line(1)
    line["requestMetadata"] = {"app": "<!channel> <https://evil.example|x> &"}
    payload = gzip.compress(
        json.dumps(
            {
                "messageType": "DATA_MESSAGE",
                "owner": "1",
                "logGroup": "g",
                "logStream": "s",
                "subscriptionFilters": [],
                "logEvents": [
                    {"id": "1", "timestamp": 0, "message": json.dumps(line)}
                    for line in [line, {**line, "requestId": "two"}, {**line, "requestId": "three"}]
                ],
            }
        ).encode()
    )
    result = handlers.usage.handler({"awslogs": {"data": base64.b64encode(payload).decode()}}, world.ctx)
    assert result["transitions"]
    assert len(world.slack) >= 2
    text = json.dumps(world.slack)
    assert "&lt;!channel&gt;" in text and "&lt;https://evil.example|click&gt; &amp;" in text
    check_outputs(world, result)
