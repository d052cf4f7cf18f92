"""A stubbed Bedrock runtime (botocore's Stubber: requests and responses validated against the real service
model) and the guarded-client calls the client suites make."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from botocore.response import StreamingBody
from botocore.stub import Stubber
from botocore.validate import validate_parameters

from guardrail.client import GuardedBedrockClient
from guardrail.service.sources import RecordParser

SONNET = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
HAIKU = "us.anthropic.claude-haiku-4-5-20251001-v1:0"
OPERATIONS = ("converse", "converse_stream", "invoke_model", "invoke_model_with_response_stream")
MESSAGES = [{"role": "user", "content": [{"text": "Summarise the incident."}]}]
ANTHROPIC_BODY = json.dumps(
    {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 512, "messages": [{"role": "user", "content": "hi"}]}
).encode()

# One agent turn with prompt caching: 3 plain input tokens, 25,037 cache-write tokens (DESIGN.md 7).
USAGE = {"input": 3, "output": 400, "cache_read": 0, "cache_write": 25037}
# us. (regional) Sonnet 4.5: 3.30 / 16.50 per 1M, cache write 4.125, cache read 0.33.
USAGE_COST = Decimal("0.109887525")  # (3*3.3 + 400*16.5 + 25037*4.125) / 1e6
SMALL = {"input": 10, "output": 10, "cache_read": 0, "cache_write": 0}


# -- stubbed Bedrock ---------------------------------------------------------------------------------


class StubbedEventStream(dict[str, Any]):
    """Stands in for botocore's EventStream. Stubber validates a response's `stream` member as a
    structure, so it sees an empty dict while the response is added; afterwards it iterates events."""

    def __init__(self, events: list[dict[str, Any]]) -> None:
        super().__init__()
        self.events = events
        self.armed = False
        self.closed = False

    def __iter__(self) -> Iterator[Any]:
        return iter(self.events) if self.armed else iter(())

    def close(self) -> None:
        self.closed = True


@dataclass
class Bedrock:
    client: Any
    stubber: Stubber
    streams: list[StubbedEventStream] = field(default_factory=list)

    def shape(self, name: str) -> Any:
        return self.client.meta.service_model.shape_for(name)

    def respond(self, operation: str, response: dict[str, Any], expected: dict[str, Any]) -> None:
        stream = response.get("stream", response.get("body"))
        if isinstance(stream, StubbedEventStream):
            union = "ConverseStreamOutput" if operation == "converse_stream" else "ResponseStream"
            for event in stream.events:
                validate_parameters(event, self.shape(union))  # each event against the real model
        self.stubber.add_response(operation, response, expected)
        if isinstance(stream, StubbedEventStream):
            stream.armed = True
            self.streams.append(stream)


def meta(request_id: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "RequestId": request_id,
        "HTTPStatusCode": 200,
        "HTTPHeaders": {"x-amzn-requestid": request_id, **(headers or {})},
    }


def chunk(doc: dict[str, Any]) -> dict[str, Any]:
    return {"chunk": {"bytes": json.dumps(doc).encode()}}


def request(operation: str, model: str) -> dict[str, Any]:
    if operation.startswith("converse"):
        return {"modelId": model, "messages": MESSAGES}
    return {"modelId": model, "body": ANTHROPIC_BODY, "contentType": "application/json", "accept": "application/json"}


def response(operation: str, request_id: str, usage: dict[str, int] = USAGE) -> dict[str, Any]:
    """A realistic response of `operation` reporting `usage`."""
    converse_usage = {
        "inputTokens": usage["input"],
        "outputTokens": usage["output"],
        "totalTokens": sum(usage.values()),
        "cacheReadInputTokens": usage["cache_read"],
        "cacheWriteInputTokens": usage["cache_write"],
    }
    anthropic_usage = {
        "input_tokens": usage["input"],
        "output_tokens": usage["output"],
        "cache_creation_input_tokens": usage["cache_write"],
        "cache_read_input_tokens": usage["cache_read"],
    }
    if operation == "converse":
        return {
            "output": {"message": {"role": "assistant", "content": [{"text": "Spend doubled at 10:41."}]}},
            "stopReason": "end_turn",
            "usage": converse_usage,
            "metrics": {"latencyMs": 812},
            "ResponseMetadata": meta(request_id),
        }
    if operation == "converse_stream":
        events = [
            {"messageStart": {"role": "assistant"}},
            {"contentBlockDelta": {"delta": {"text": "Spend doubled"}, "contentBlockIndex": 0}},
            {"contentBlockDelta": {"delta": {"text": " at 10:41."}, "contentBlockIndex": 0}},
            {"contentBlockStop": {"contentBlockIndex": 0}},
            {"messageStop": {"stopReason": "end_turn"}},
            {"metadata": {"usage": converse_usage, "metrics": {"latencyMs": 812}}},
        ]
        return {"stream": StubbedEventStream(events), "ResponseMetadata": meta(request_id)}
    if operation == "invoke_model":
        body = json.dumps(
            {
                "id": "msg_01",
                "type": "message",
                "role": "assistant",
                "content": [{"type": "text", "text": "Spend doubled at 10:41."}],
                "stop_reason": "end_turn",
                "usage": anthropic_usage,
            }
        ).encode()
        headers = {
            "x-amzn-bedrock-input-token-count": str(usage["input"]),
            "x-amzn-bedrock-output-token-count": str(usage["output"]),
        }
        return {
            "body": StreamingBody(io.BytesIO(body), len(body)),
            "contentType": "application/json",
            "ResponseMetadata": meta(request_id, headers),
        }
    start_usage = {**anthropic_usage, "output_tokens": 1}
    events = [
        chunk({"type": "message_start", "message": {"id": "msg_01", "role": "assistant", "usage": start_usage}}),
        chunk({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        chunk({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Spend doubled"}}),
        chunk({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": " at 10:41."}}),
        chunk({"type": "content_block_stop", "index": 0}),
        chunk(
            {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": usage["output"]}}
        ),
        chunk(
            {
                "type": "message_stop",
                "amazon-bedrock-invocationMetrics": {
                    "inputTokenCount": usage["input"],
                    "outputTokenCount": usage["output"],
                    "invocationLatency": 812,
                    "firstByteLatency": 301,
                },
            }
        ),
    ]
    return {"body": StubbedEventStream(events), "contentType": "application/json", "ResponseMetadata": meta(request_id)}


def call(client: GuardedBedrockClient, operation: str, model: str = SONNET) -> dict[str, Any]:
    """Call like an application would, reading the whole response."""
    resp: dict[str, Any] = getattr(client, operation)(**request(operation, model))
    if operation == "converse_stream":
        resp["events"] = list(resp["stream"])
    elif operation == "invoke_model":
        resp["text"] = json.loads(resp["body"].read())["content"][0]["text"]
    elif operation == "invoke_model_with_response_stream":
        resp["events"] = list(resp["body"])
    return resp


def expected_request(operation: str, model: str, *, app: str | None = "chat-api") -> dict[str, Any]:
    expected = request(operation, model)
    if operation.startswith("converse") and app:
        expected["requestMetadata"] = {"app": app}  # tagged so the invocation log counts the same scopes
    return expected


def parse_usage(events: list[dict[str, Any]]) -> list[Any]:
    parsed = RecordParser().events(events)
    assert not parsed.quarantined, parsed.quarantined
    return parsed.records
