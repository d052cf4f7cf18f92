"""Who may reset (issue 13, item 5): through the IAM-authenticated function URL the audit actor is the caller
ARN AWS verified; a name in the body is only a note beside it."""

from __future__ import annotations

import base64
import json
from typing import Any

import boto3

import handlers.reset
from guardrail.store.flags import FlagStore
from tests.support.common import TABLE
from tests.support.world import World, batch

ONCALL = "arn:aws:sts::123456789012:assumed-role/oncall/alice"


def url_event(body: dict[str, Any], *, caller: str | None = ONCALL, encode: bool = False) -> dict[str, Any]:
    """A Lambda function URL request (payload 2.0) as AWS sends it after verifying the SigV4 signature."""
    text = json.dumps(body)
    context: dict[str, Any] = {
        "accountId": "123456789012",
        "domainName": "abc.lambda-url.us-east-1.on.aws",
        "http": {"method": "POST", "path": "/", "protocol": "HTTP/1.1", "sourceIp": "203.0.113.9", "userAgent": "x"},
        "requestId": "r-1",
        "stage": "$default",
    }
    if caller is not None:
        context["authorizer"] = {"iam": {"accountId": "123456789012", "callerId": "AROA:alice", "userArn": caller}}
    return {
        "version": "2.0",
        "rawPath": "/",
        "headers": {"content-type": "application/json"},
        "requestContext": context,
        "body": base64.b64encode(text.encode()).decode() if encode else text,
        "isBase64Encoded": encode,
    }


def audit(scope: str = "global") -> Any:
    history = FlagStore(boto3.client("dynamodb", region_name="us-east-1"), TABLE).history(scope)
    (entry,) = [e for e in history if e.action == "shutdown->normal"]
    return entry


def test_the_verified_caller_is_the_actor_and_a_claimed_name_only_a_note(world: World) -> None:
    world.usage(batch("a", 60))
    body = {"scope": "global", "reason": "loop fixed", "actor": "root@example.com"}
    response = handlers.reset.handler(url_event(body, encode=True), world.ctx)  # type: ignore[arg-type]
    assert response["statusCode"] == 200 and json.loads(response["body"])["to_level"] == "normal"
    entry = audit()
    assert entry.actor == ONCALL
    assert entry.reason == "loop fixed [note: claimed actor root@example.com]"
    assert world.concurrency("chat-api") == 7


def test_a_url_request_without_a_verified_caller_changes_nothing(world: World) -> None:
    world.usage(batch("a", 60))
    before = world.flag()
    body = {"scope": "global", "reason": "loop fixed", "actor": "root@example.com"}
    response = handlers.reset.handler(url_event(body, caller=None), world.ctx)  # type: ignore[arg-type]
    assert response["statusCode"] == 400 and "no verified caller" in json.loads(response["body"])["error"]
    assert world.flag() == before and world.concurrency("chat-api") == 0


def test_a_bad_url_body_is_refused_clearly(world: World) -> None:
    event = url_event({})
    event["body"] = "not json"
    response = handlers.reset.handler(event, world.ctx)  # type: ignore[arg-type]
    assert response["statusCode"] == 400 and "not JSON" in json.loads(response["body"])["error"]
