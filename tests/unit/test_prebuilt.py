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
        prebuilt.register(client, validate=validate)
        prebuilt.register(client, validate=validate)  # idempotent: one body swap per call
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


@pytest.mark.parametrize("validate", [True, False])
def test_items_given_as_json_text_send_the_same_request(validate: bool) -> None:
    items = _items(40)
    mixed = [json.dumps(item) if i % 3 else item for i, item in enumerate(items)]  # text and dicts, any order
    plain, plain_sent = _client(validate=validate, fast=False)
    fast, fast_sent = _client(validate=validate, fast=True)
    plain.transact_write_items(TransactItems=items, ClientRequestToken="token-1")
    fast.transact_write_items(TransactItems=mixed, ClientRequestToken="token-1")
    assert json.loads(fast_sent[0].body) == json.loads(plain_sent[0].body)
    assert prebuilt.accepts_text(fast) and not prebuilt.accepts_text(plain)


def test_a_validating_client_refuses_a_bad_item_given_as_text() -> None:
    fast, sent = _client(validate=True, fast=True)
    items: list[Any] = _items(3)
    items[1]["Update"]["ExpressionAttributeValues"][":s"] = {"N": 1.5}
    with pytest.raises(ParamValidationError):
        fast.transact_write_items(TransactItems=[json.dumps(i) for i in items])
    assert not sent


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


def _prebuilt(client: Any) -> bool:
    return "guardrail-prebuilt-build-TransactWriteItems" in client.meta.events._emitter._unique_id_handlers


def test_only_the_runtimes_own_dynamodb_client_sends_prebuilt_bodies(monkeypatch: pytest.MonkeyPatch) -> None:
    from guardrail.service.runtime import own_client
    from guardrail.store.ledger import Ledger

    for name, value in {
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "t",
        "AWS_SECRET_ACCESS_KEY": "t",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_NAME", raising=False)
    made = own_client("dynamodb")  # tests, CLI, demo: validating, so the full request is validated once
    assert _prebuilt(made)
    made.meta.events.register("before-send.dynamodb.*", lambda request, **_: _ok(request))
    items = _items(3)
    items[1]["Update"]["ExpressionAttributeValues"][":s"] = {"N": 1.5}
    with pytest.raises(ParamValidationError):
        made.transact_write_items(TransactItems=items)
    assert not _prebuilt(own_client("sns"))
    user = boto3.client("dynamodb")  # e.g. the client a ledger-mode app injects
    Ledger(user, "t")
    assert not _prebuilt(user)  # a client the guardrail did not make is left as it is


def _ok(request: Any) -> AWSResponse:
    return AWSResponse(request.url, 200, {"Content-Type": "application/x-amz-json-1.0"}, _Body())
