"""The ledger's transactions are sent as the JSON they are built as: the same request DynamoDB would get
from botocore's own serialiser, still validated once where the client validates, and a bad request still
refused with botocore's error."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.config import Config
from botocore.exceptions import ParamValidationError

from guardrail.store import prebuilt


class _Body:
    def stream(self, **_: Any) -> Any:
        yield b"{}"


def _client(*, validate: bool, fast: bool) -> tuple[Any, list[Any]]:
    client = boto3.client(
        "dynamodb",
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=Config(parameter_validation=validate),
    )
    sent: list[Any] = []

    def answer(request: Any, **_: Any) -> AWSResponse:
        sent.append(request)
        return AWSResponse(request.url, 200, {"Content-Type": "application/x-amz-json-1.0"}, _Body())

    client.meta.events.register("before-send.dynamodb.*", answer)
    if fast:
        prebuilt.register(client)
        prebuilt.register(client)  # idempotent: one body swap per call
    return client, sent


def _items(n: int) -> list[dict[str, Any]]:
    return [
        {
            "Put": {
                "TableName": "t",
                "Item": {
                    "pk": {"S": f"REQ#r-{i}"},
                    "sk": {"S": "REQ"},
                    "model_id": {"S": "anthropic.claude-3-haiku-20240307-v1:0 \u00e9"},
                    "cost_usd": {"N": "0.000125"},
                    "counters": {"L": [{"L": [{"S": "global"}, {"S": "day"}]}]},
                    "metadata": {"M": {"app": {"S": "chat"}}},
                    "partial": {"BOOL": True},
                },
                "ConditionExpression": "attribute_not_exists(pk)",
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            }
        }
        if i % 2 == 0
        else {
            "Update": {
                "TableName": "t",
                "Key": {"pk": {"S": f"SCOPE#s-{i}"}, "sk": {"S": "WINDOW#day#2026-11-22"}},
                "UpdateExpression": "ADD #s :s",
                "ExpressionAttributeNames": {"#s": "spend_usd"},
                "ExpressionAttributeValues": {":s": {"N": "1.5"}},
            }
        }
        for i in range(n)
    ]


@pytest.mark.parametrize("validate", [True, False])
def test_the_body_is_what_botocore_would_send(validate: bool) -> None:
    params = {"TransactItems": _items(40), "ClientRequestToken": "token-1"}
    plain, plain_sent = _client(validate=validate, fast=False)
    fast, fast_sent = _client(validate=validate, fast=True)
    plain.transact_write_items(**params)
    fast.transact_write_items(**params)
    assert json.loads(fast_sent[0].body) == json.loads(plain_sent[0].body)
    assert fast_sent[0].headers["X-Amz-Target"] == plain_sent[0].headers["X-Amz-Target"]
    assert len(params["TransactItems"]) == 40  # the caller's parameters are left as they were


def test_botocore_still_fills_in_the_idempotency_token() -> None:
    fast, sent = _client(validate=True, fast=True)
    fast.transact_write_items(TransactItems=_items(3))
    assert json.loads(sent[0].body)["ClientRequestToken"]


def test_a_validating_client_still_refuses_a_bad_request_past_the_first_item() -> None:
    fast, sent = _client(validate=True, fast=True)
    items = _items(3)
    items[1]["Update"]["ExpressionAttributeValues"][":s"] = {"N": 1.5}  # a float, not DynamoDB's number text
    with pytest.raises(ParamValidationError):
        fast.transact_write_items(TransactItems=items)
    assert not sent


def test_whether_a_client_validates_is_read_from_the_client() -> None:
    assert prebuilt._validates(_client(validate=True, fast=False)[0])
    assert not prebuilt._validates(_client(validate=False, fast=False)[0])
    prebuilt.register(None)  # a test double or no client: nothing to do
