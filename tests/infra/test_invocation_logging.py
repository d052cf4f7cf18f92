"""The invocation-logging custom resource never replaces a configuration it did not write."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from guardrail_cdk.constructs.ingest import CUSTOM_RESOURCE_CODE  # type: ignore[import-not-found, unused-ignore]

spec = importlib.util.spec_from_file_location("invocation_logging", CUSTOM_RESOURCE_CODE)
assert spec and spec.loader
provider = importlib.util.module_from_spec(spec)
spec.loader.exec_module(provider)

ROLE = "arn:aws:iam::123456789012:role/delivery"
OURS = {"cloudWatchConfig": {"logGroupName": "guardrail-logs", "roleArn": ROLE}, "textDataDeliveryEnabled": True}


def event(kind: str, group: str = "guardrail-logs") -> dict[str, Any]:
    return {"RequestType": kind, "ResourceProperties": {"LogGroupName": group, "RoleArn": ROLE}}


class Bedrock:
    def __init__(self) -> None:
        self.client = boto3.client("bedrock", region_name="us-east-1")
        self.stub = Stubber(self.client)


@pytest.fixture
def bedrock() -> Iterator[Bedrock]:
    fake = Bedrock()
    with fake.stub:
        yield fake
        fake.stub.assert_no_pending_responses()


def test_create_turns_logging_on_to_our_group(bedrock: Bedrock) -> None:
    bedrock.stub.add_response("get_model_invocation_logging_configuration", {})
    bedrock.stub.add_response(
        "put_model_invocation_logging_configuration",
        {},
        {"loggingConfig": {**provider.DATA, "cloudWatchConfig": {"logGroupName": "guardrail-logs", "roleArn": ROLE}}},
    )
    provider.apply(event("Create"), bedrock.client)


def test_create_refuses_to_replace_someone_elses_configuration(bedrock: Bedrock) -> None:
    theirs = {"cloudWatchConfig": {"logGroupName": "team-logs", "roleArn": ROLE}, "textDataDeliveryEnabled": True}
    bedrock.stub.add_response("get_model_invocation_logging_configuration", {"loggingConfig": theirs})
    with pytest.raises(RuntimeError, match=r"team-logs.*invocationLogs\.mode=existing"):
        provider.apply(event("Create"), bedrock.client)


def test_delete_removes_only_our_configuration(bedrock: Bedrock) -> None:
    bedrock.stub.add_response("get_model_invocation_logging_configuration", {"loggingConfig": OURS})
    bedrock.stub.add_response("delete_model_invocation_logging_configuration", {})
    provider.apply(event("Delete"), bedrock.client)
    theirs = {"cloudWatchConfig": {"logGroupName": "team-logs", "roleArn": ROLE}, "textDataDeliveryEnabled": True}
    bedrock.stub.add_response("get_model_invocation_logging_configuration", {"loggingConfig": theirs})
    provider.apply(event("Delete"), bedrock.client)  # nothing else called


def test_delete_keeps_an_s3_destination_added_later(bedrock: Bedrock) -> None:
    s3 = {"bucketName": "audit", "keyPrefix": "bedrock"}
    bedrock.stub.add_response("get_model_invocation_logging_configuration", {"loggingConfig": {**OURS, "s3Config": s3}})
    bedrock.stub.add_response(
        "put_model_invocation_logging_configuration",
        {},
        {"loggingConfig": {"s3Config": s3, "textDataDeliveryEnabled": True}},
    )
    provider.apply(event("Delete"), bedrock.client)
