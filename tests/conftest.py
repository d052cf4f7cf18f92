"""Shared fixtures: fake credentials, a moto DynamoDB ledger, sample events from tests/events/."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import settings

from tests.support.common import TABLE, Clock, FakeLambdaContext
from tests.support.synth import GUARDRAIL, Synth, synthesize

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


@pytest.fixture(autouse=True, scope="session")
def _fast_moto_transactions() -> None:
    from guardrail.tools.embedded_aws import speed_up_moto_transactions

    speed_up_moto_transactions()


# Every test on the embedded AWS runs on a clock that starts mid-morning of a fixed day and ticks: a suite run
# across UTC midnight cannot see a record written "yesterday" evaluated "today".
SUITE_START = "2026-11-22T10:00:00+00:00"


def _import_every_model() -> None:
    """Pydantic builds a model's schema when its class is defined: every module that defines one is imported
    before the clock is patched (a class defined under it would see freezegun's datetime)."""
    import importlib
    import pkgutil

    import aws_lambda_powertools.utilities.parser as parser

    import guardrail
    import handlers

    # Powertools' parser builds its models lazily, on first attribute access: touch them all now.
    for package in (parser, guardrail, handlers):
        for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if not module.name.endswith(".__main__"):  # an entry point runs when imported
                importlib.import_module(module.name)


@pytest.fixture
def aws() -> Iterator[None]:
    from freezegun import freeze_time
    from moto import mock_aws

    _import_every_model()
    with freeze_time(SUITE_START, tick=True), mock_aws():
        yield


@pytest.fixture
def ddb(aws: None) -> Any:
    import boto3

    from guardrail.store.table import create_table

    client = boto3.client("dynamodb", region_name="us-east-1")
    create_table(client, TABLE)
    return client


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2026, 11, 22, 10, 45, tzinfo=UTC))


@pytest.fixture
def make_engine(ddb: Any, clock: Clock) -> Callable[..., Any]:
    from guardrail.core.config import load_settings
    from guardrail.service.engine import Engine

    def make(**settings: Any) -> Engine:
        return Engine(load_settings(table_name=TABLE, **settings), dynamodb=ddb, now=clock)

    return make


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
        "delete_item",
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


@pytest.fixture(scope="session")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    """The CDK app synthesized once per session (only suites that ask for it pay for it)."""
    return synthesize(GUARDRAIL, tmp_path_factory.mktemp("cdk.out"))
