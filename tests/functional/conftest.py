"""Fixtures of the functional suites (moto worlds driven through handlers, CLI and guard())."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from guardrail.client import ClientOptions, GuardedBedrockClient
from guardrail.core.config import load_settings
from guardrail.core.usage_event import USAGE_DETAIL_TYPES
from guardrail.service.runtime import default_runtime
from tests.support.bedrock import Bedrock
from tests.support.common import TABLE
from tests.support.world import World


@pytest.fixture
def world(ddb: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    yield World(monkeypatch)
    default_runtime.cache_clear()


@pytest.fixture
def bedrock(aws: None) -> Iterator[Bedrock]:
    client = boto3.client("bedrock-runtime", region_name="us-east-1")
    with Stubber(client) as stubber:
        yield Bedrock(client, stubber)


@pytest.fixture
def usage_events(aws: None) -> Callable[[], list[dict[str, Any]]]:
    """Every usage event (`Bedrock Usage`, `Bedrock Usage Batch`, `Bedrock Usage Rows`) put on the guardrail's
    usage bus (an EventBridge rule -> SQS, as in AWS)."""
    sqs = boto3.client("sqs", region_name="us-east-1")
    events = boto3.client("events", region_name="us-east-1")
    url = sqs.create_queue(QueueName="usage")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    bus = load_settings().usage_event_bus
    events.create_event_bus(Name=bus)
    events.put_rule(
        Name="usage",
        EventBusName=bus,
        EventPattern=json.dumps({"source": ["guardrail.client"], "detail-type": list(USAGE_DETAIL_TYPES)}),
    )
    events.put_targets(Rule="usage", EventBusName=bus, Targets=[{"Id": "q", "Arn": arn}])

    def received() -> list[dict[str, Any]]:
        out = []
        while True:
            msgs = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
            if not msgs:
                return out
            for m in msgs:
                out.append(json.loads(m["Body"]))
                sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])

    return received


@pytest.fixture
def make_client(ddb: Any, bedrock: Bedrock) -> Callable[..., GuardedBedrockClient]:
    def make(
        *, metadata: dict[str, str] | None = None, settings: dict[str, Any] | None = None, **options: Any
    ) -> GuardedBedrockClient:
        options.setdefault("background", False)
        # The flag read timeout is wall time: on a machine with both cores busy a moto read can pass the
        # default 1 s, and the client would (rightly) fail open. Only the outage tests exercise it.
        options.setdefault("flag_read_timeout", 30.0)
        return GuardedBedrockClient(
            bedrock.client,
            metadata={"app": "chat-api"} if metadata is None else metadata,
            settings=load_settings(table_name=TABLE, **(settings or {})),
            options=ClientOptions(**options),
            dynamodb=ddb,
            events=boto3.client("events", region_name="us-east-1"),
        )

    return make
