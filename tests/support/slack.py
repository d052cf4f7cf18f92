"""Slack as the reset endpoint sees it: interaction payloads, signed as Slack signs them (HMAC-SHA256 of
`v0:<timestamp>:<body>` with the app's signing secret), delivered as Lambda function URL requests; and a
recorder in place of Slack's Web API."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
BOT_TOKEN = "xoxb-test-bot-token"
TEAM = "T0001"
ONCALL_USER = "U0ONCALL"
CHANNEL = "C0ALERTS"
ALERT_TS = "1763805600.000100"


def sign(body: str, timestamp: int, secret: str = SIGNING_SECRET) -> str:
    digest = hmac.new(secret.encode(), f"v0:{timestamp}:{body}".encode(), hashlib.sha256).hexdigest()
    return f"v0={digest}"


def url_request(
    payload: dict[str, Any], *, at: datetime, secret: str = SIGNING_SECRET, age_seconds: int = 0
) -> dict[str, Any]:
    """A function URL event (payload 2.0) carrying `payload=<json>` form-encoded and base64'd, as AWS
    delivers Slack's POST."""
    body = urlencode({"payload": json.dumps(payload)})
    timestamp = int(at.timestamp()) - age_seconds
    return {
        "version": "2.0",
        "rawPath": "/",
        "headers": {
            "content-type": "application/x-www-form-urlencoded",
            "x-slack-request-timestamp": str(timestamp),
            "x-slack-signature": sign(body, timestamp, secret),
        },
        "requestContext": {"http": {"method": "POST", "path": "/"}, "requestId": "r-1"},
        "body": base64.b64encode(body.encode()).decode(),
        "isBase64Encoded": True,
    }


def user(user_id: str = ONCALL_USER, name: str = "alice") -> dict[str, Any]:
    return {"id": user_id, "username": name, "name": name, "team_id": TEAM}


def click(button: dict[str, Any], *, who: dict[str, Any] | None = None) -> dict[str, Any]:
    """`block_actions`: someone clicked `button` (an element of the alert's actions block) and confirmed."""
    return {
        "type": "block_actions",
        "team": {"id": TEAM, "domain": "acme"},
        "user": who or user(),
        "trigger_id": "trig-1",
        "container": {"type": "message", "message_ts": ALERT_TS, "channel_id": CHANNEL, "is_ephemeral": False},
        "channel": {"id": CHANNEL, "name": "alerts"},
        "response_url": "https://hooks.slack.com/actions/T0001/1/xyz",
        "actions": [
            {
                "type": "button",
                "action_id": button["action_id"],
                "block_id": "guardrail_reset_buttons",
                "value": button["value"],
                "action_ts": "1763805601.1",
            }
        ],
    }


def submit(view: dict[str, Any], reason: str | None, *, who: dict[str, Any] | None = None) -> dict[str, Any]:
    """`view_submission`: the dialog `view` (as the endpoint opened it) submitted with `reason`."""
    return {
        "type": "view_submission",
        "team": {"id": TEAM, "domain": "acme"},
        "user": who or user(),
        "view": {
            **view,
            "id": "V1",
            "state": {"values": {"reason": {"reason": {"type": "plain_text_input", "value": reason}}}},
        },
    }


class FakeSlack:
    """Records every Web API call the endpoint makes (no network)."""

    def __init__(self) -> None:
        self.tokens: list[str] = []
        self.views: list[dict[str, Any]] = []
        self.messages: list[dict[str, Any]] = []
        self.ephemeral: list[dict[str, Any]] = []

    def __call__(self, token: str) -> FakeSlack:
        self.tokens.append(token)
        return self

    def views_open(self, *, trigger_id: str, view: dict[str, Any]) -> Any:
        self.views.append({"trigger_id": trigger_id, **view})
        return {"ok": True}

    def chat_postMessage(self, *, channel: str, text: str, **kwargs: Any) -> Any:
        self.messages.append({"channel": channel, "text": text, **kwargs})
        return {"ok": True}

    def chat_postEphemeral(self, *, channel: str, user: str, text: str, **kwargs: Any) -> Any:
        self.ephemeral.append({"channel": channel, "user": user, "text": text, **kwargs})
        return {"ok": True}

    def said_nothing(self) -> bool:
        return not (self.views or self.messages or self.ephemeral)
