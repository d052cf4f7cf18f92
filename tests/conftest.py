"""Shared fixtures: fake credentials, a moto DynamoDB ledger, sample events from tests/events/."""

from __future__ import annotations

import io
import json
import logging
import os
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

# Before anything imports boto3 or Powertools (Metrics reads its namespace when constructed).
os.environ.update(
    {
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SECURITY_TOKEN": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "POWERTOOLS_METRICS_NAMESPACE": "BedrockGuardrail",
        "POWERTOOLS_SERVICE_NAME": "guardrail-test",
        "POWERTOOLS_TRACE_DISABLED": "true",
    }
)
for _key in [k for k in os.environ if k.startswith("GUARDRAIL_")]:
    del os.environ[_key]

# CI runs the property tests on a fixed seed so a landing never depends on luck; locally they explore.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

EVENTS = Path(__file__).parent / "events"
TABLE = "guardrail-test"


def load_event(name: str) -> Any:
    """A sample event stored under tests/events/ (real shapes, see ../shared/events/)."""
    return json.loads((EVENTS / name).read_text())


@pytest.fixture(autouse=True, scope="session")
def _fast_moto_transactions() -> None:
    from guardrail.embedded_aws import speed_up_moto_transactions

    speed_up_moto_transactions()


@pytest.fixture
def aws() -> Iterator[None]:
    from moto import mock_aws

    with mock_aws():
        yield


@pytest.fixture
def ddb(aws: None) -> Any:
    import boto3

    from guardrail.ledger import create_table

    client = boto3.client("dynamodb", region_name="us-east-1")
    create_table(client, TABLE)
    return client


class Clock:
    """A settable clock injected as `now` (engine, ledger, flags)."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2026, 11, 22, 10, 45, tzinfo=UTC))


@pytest.fixture
def make_engine(ddb: Any, clock: Clock) -> Callable[..., Any]:
    from guardrail.config import load_settings
    from guardrail.engine import Engine

    def make(**settings: Any) -> Engine:
        return Engine(load_settings(table_name=TABLE, **settings), dynamodb=ddb, now=clock)

    return make


class FakeLambdaContext:
    function_name = "guardrail-test"
    function_version = "$LATEST"
    memory_limit_in_mb = 256
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:guardrail-test"
    aws_request_id = "test-request"
    log_group_name = "/aws/lambda/guardrail-test"
    log_stream_name = "test"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


@pytest.fixture
def lambda_context() -> FakeLambdaContext:
    return FakeLambdaContext()


@pytest.fixture
def serialised_dynamodb() -> Iterator[None]:
    """moto's DynamoDB is not atomic across threads; real DynamoDB is, per item. Serialise the backend."""
    from moto.dynamodb.models import DynamoDBBackend

    lock = threading.RLock()
    originals = {}
    for name in (
        "transact_write_items",
        "update_item",
        "put_item",
        "get_item",
        "batch_get_item",
        "query",
        "scan",
    ):
        original = getattr(DynamoDBBackend, name)
        originals[name] = original

        def locked(self: Any, *args: Any, __original: Any = original, **kwargs: Any) -> Any:
            with lock:
                return __original(self, *args, **kwargs)

        setattr(DynamoDBBackend, name, locked)
    yield
    for name, original in originals.items():
        setattr(DynamoDBBackend, name, original)


class Output:
    """Everything the functions print (EMF metrics) and log (Powertools JSON lines)."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        from guardrail.observability import logger

        self.capsys = capsys
        self.logs = io.StringIO()
        self.handler = logging.StreamHandler(self.logs)
        self.handler.setFormatter(logger.registered_formatter)
        logger._logger.addHandler(self.handler)
        self.printed = ""

    def text(self) -> str:
        self.printed += self.capsys.readouterr().out
        return self.printed + self.logs.getvalue()

    def metric(self, name: str) -> float:
        """Sum of a metric over every EMF blob printed so far."""
        total = 0.0
        for line in self.text().splitlines():
            if not line.startswith("{") or "_aws" not in line:
                continue
            blob = json.loads(line)
            if name in blob:
                value = blob[name]
                total += sum(value) if isinstance(value, list) else value
        return total

    def log_lines(self, level: str) -> list[dict[str, Any]]:
        out = []
        for line in self.logs.getvalue().splitlines():
            entry = json.loads(line)
            if entry.get("level") == level:
                out.append(entry)
        return out

    def drain(self) -> str:
        """Everything printed and logged since the last drain."""
        out = self.capsys.readouterr()
        text = out.out + out.err + self.logs.getvalue()
        self.logs.seek(0)
        self.logs.truncate()
        return text
