"""Alerts: one message per transition, to SNS and to a Slack incoming webhook.

A failed notification never blocks or undoes enforcement: every send is tried a few times, and what
still fails is returned (and logged and counted by the caller), never raised. The webhook URL is a
secret: it is read from Secrets Manager, cached, and never logged.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from cachetools import TTLCache

from guardrail.core.models import ESCALATION_LEVELS, Level, usd

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_sns import SNSClient

SLACK_TIMEOUT_SECONDS = 3.0
SEND_ATTEMPTS = 3
EMOJI = {
    Level.NORMAL: ":white_check_mark:",
    Level.ALERT: ":warning:",
    Level.THROTTLE: ":turtle:",
    Level.SHUTDOWN: ":octagonal_sign:",
}


def mrkdwn(text: str) -> dict[str, Any]:
    """A Slack mrkdwn text object. `verbatim` stops Slack from turning outside text (an alarm name, an app
    name) into links, @-mentions or channel references: what we escaped stays inert."""
    return {"type": "mrkdwn", "text": text, "verbatim": True}


def slack_escape(text: str) -> str:
    """Slack mrkdwn control characters; anything from outside (alarm names, metadata) goes through this."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


@dataclass(frozen=True)
class AlertMessage:
    """Everything on-call needs to understand a transition in seconds."""

    scope: str
    from_level: Level
    to_level: Level
    window: str
    spend: Decimal
    thresholds: dict[Level, Decimal]
    reason: str
    burn_rate_per_hour: Decimal | None = None
    burn_minutes: int = 0
    top: dict[str, list[tuple[str, Decimal]]] = field(default_factory=dict)
    actions: list[str] = field(default_factory=list)
    dry_run: bool = False
    reset_command: str = ""
    baseline: Decimal = Decimal(0)  # re-armed after a reset: thresholds count from this spend

    @property
    def subject(self) -> str:
        verb = "would move" if self.dry_run else "moved"
        tag = "[DRY-RUN] " if self.dry_run else ""
        return f"{tag}Bedrock guardrail: {self.scope} {verb} to {self.to_level.label.upper()}"[:100]

    def next_level(self) -> tuple[Level, Decimal] | None:
        for level in ESCALATION_LEVELS:
            if level > self.to_level:
                return level, self.thresholds[level]
        return None

    def projection(self) -> str:
        nxt = self.next_level()
        if nxt is None:
            return "no higher level: shutdown is the last"
        level, threshold = nxt
        threshold += self.baseline
        left = threshold - self.spend
        if not self.burn_rate_per_hour or self.burn_rate_per_hour <= 0:
            return f"{level.label} at {usd(threshold)} ({usd(left)} to go; no recent burn)"
        minutes = int(left / self.burn_rate_per_hour * 60)
        return f"{level.label} at {usd(threshold)} in about {max(minutes, 0)} min at this rate"

    def lines(self) -> list[str]:
        thresholds = ", ".join(f"{lvl.label} {usd(t)}" for lvl, t in self.thresholds.items())
        out = [
            f"Scope {self.scope}: {self.from_level.label} -> {self.to_level.label}",
            f"Spend this {self.window}: {usd(self.spend)} (thresholds: {thresholds}"
            + (f", counted from {usd(self.baseline)} after a reset)" if self.baseline else ")"),
            f"Why: {self.reason}",
        ]
        if self.burn_rate_per_hour is not None:
            out.append(f"Burn rate: {usd(self.burn_rate_per_hour)}/h over the last {self.burn_minutes} min")
        out.append(f"Next: {self.projection()}")
        for name, items in self.top.items():
            if items:
                out.append(f"Top {name}: " + ", ".join(f"{k} {usd(v)}" for k, v in items))
        prefix = "Would have done" if self.dry_run else "Done"
        out.append(f"{prefix}: " + ("; ".join(self.actions) if self.actions else "notification only"))
        if self.reset_command and self.to_level > Level.NORMAL:
            out.append(f"Reset: {self.reset_command}")
        return out

    def text(self) -> str:
        return "\n".join([self.subject, *self.lines()])

    def slack_payload(self, *, buttons: bool = False) -> dict[str, Any]:
        """Block Kit with a plain-text fallback; outside text escaped. With `buttons`, a throttle or shutdown
        page carries Reset and Snooze 1 h (handled by guardrail.service.slack_reset)."""
        esc = slack_escape
        fields = [
            mrkdwn(f"*Scope*\n{esc(self.scope)}"),
            mrkdwn(f"*Level*\n{self.from_level.label} → *{self.to_level.label}*"),
            mrkdwn(f"*Spend this {self.window}*\n{usd(self.spend)}"),
            mrkdwn(f"*Next*\n{esc(self.projection())}"),
        ]
        if self.burn_rate_per_hour is not None:
            fields.append(mrkdwn(f"*Burn rate*\n{usd(self.burn_rate_per_hour)}/h ({self.burn_minutes} min)"))
        blocks: list[dict[str, Any]] = [
            {"type": "header", "text": {"type": "plain_text", "text": esc(self.subject)[:150]}},
            {"type": "section", "text": mrkdwn(f"{EMOJI[self.to_level]} {esc(self.reason)}")},
            {"type": "section", "fields": fields},
        ]
        top = [
            f"*Top {name}*: " + ", ".join(f"{esc(k)} {usd(v)}" for k, v in items)
            for name, items in self.top.items()
            if items
        ]
        if top:
            blocks.append({"type": "section", "text": mrkdwn("\n".join(top))})
        done = "Would have done" if self.dry_run else "Done"
        actions = "\n".join(f"• {esc(a)}" for a in self.actions) or "notification only"
        blocks.append({"type": "section", "text": mrkdwn(f"*{done}*\n{actions}")})
        if self.reset_command and self.to_level > Level.NORMAL:
            blocks.append({"type": "context", "elements": [mrkdwn(f"Reset: `{esc(self.reset_command)}`")]})
        controls = reset_buttons(self.scope) if buttons and self.to_level >= Level.THROTTLE else None
        if controls:
            blocks.append(controls)
        return {"text": esc(self.text()), "blocks": blocks}


def short(text: str, limit: int = 80) -> str:
    """Outside text cut for Slack's short fields (a confirm dialog holds 300 characters)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


RESET_ACTION = "guardrail_reset"
SNOOZE_ACTION = "guardrail_snooze_1h"
BUTTONS_BLOCK = "guardrail_reset_buttons"
MAX_BUTTON_VALUE = 2000  # Slack's limit on a button's value


def reset_buttons(scope: str) -> dict[str, Any] | None:
    """Reset and Snooze 1 h, each behind Slack's confirm dialog; the button's value names the scope. None
    when the scope does not fit a button (the reset command in the message still works)."""
    value = json.dumps({"scope": scope})
    if len(value) > MAX_BUTTON_VALUE:
        return None

    def button(action_id: str, label: str, what: str, style: str | None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": "button",
            "action_id": action_id,
            "text": {"type": "plain_text", "text": label},
            "value": value,
            "confirm": {
                "title": {"type": "plain_text", "text": f"{label}?"},
                "text": mrkdwn(f"{what} scope *{slack_escape(short(scope))}*? Next: the reason, for the audit trail."),
                "confirm": {"type": "plain_text", "text": "Continue"},
                "deny": {"type": "plain_text", "text": "Cancel"},
            },
        }
        if style:
            out["style"] = style
        return out

    return {
        "type": "actions",
        "block_id": BUTTONS_BLOCK,
        "elements": [
            button(RESET_ACTION, "Reset", "Restore every effect of", "danger"),
            button(SNOOZE_ACTION, "Snooze 1 h", "Restore every effect and hold escalation for 1 h of", None),
        ],
    }


Poster = Callable[[str, bytes, float], int]


def http_post(url: str, body: bytes, timeout: float) -> int:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return int(response.status)


class Notifier:
    def __init__(
        self,
        *,
        topic_arn: str | None,
        slack_secret_arn: str | None,
        sns_factory: Callable[[], SNSClient],
        secrets_factory: Callable[[], SecretsManagerClient],
        post: Poster = http_post,
        sleep: Callable[[float], None] = time.sleep,
        buttons: bool = False,
    ) -> None:
        self.topic_arn = topic_arn
        self.slack_secret_arn = slack_secret_arn
        self._sns_factory = sns_factory
        self._secrets_factory = secrets_factory
        self._post = post
        self._sleep = sleep
        self.buttons = buttons
        self._webhook: TTLCache[str, str] = TTLCache(maxsize=1, ttl=300)

    def send(self, message: AlertMessage) -> list[str]:
        """Send to every configured channel; return the failures (empty when all went out)."""
        attributes = {
            "level": {"DataType": "String", "StringValue": message.to_level.label},
            "scope": {"DataType": "String", "StringValue": message.scope},
            "dry_run": {"DataType": "String", "StringValue": str(message.dry_run).lower()},
        }
        return self._deliver(
            message.subject, message.text(), lambda: message.slack_payload(buttons=self.buttons), attributes
        )

    def send_text(self, subject: str, text: str) -> list[str]:
        """A plain notice (no level change) to every configured channel; returns the failures."""

        def payload() -> dict[str, Any]:
            return {
                "text": slack_escape(f"{subject}\n{text}"),
                "blocks": [
                    {"type": "header", "text": {"type": "plain_text", "text": slack_escape(subject)[:150]}},
                    {"type": "section", "text": mrkdwn(slack_escape(text))},
                ],
            }

        return self._deliver(subject, text, payload, {})

    def _deliver(
        self,
        subject: str,
        text: str,
        slack_payload: Callable[[], dict[str, Any]],
        attributes: dict[str, Any],
    ) -> list[str]:
        failures: list[str] = []
        topic = self.topic_arn
        if topic:
            error = self._retry(
                lambda: self._sns_factory().publish(
                    TopicArn=topic, Subject=_sns_subject(subject), Message=text, MessageAttributes=attributes
                )
            )
            if error:
                failures.append(f"sns: {error}")
        if self.slack_secret_arn:
            error = self._retry(lambda: self._post_json(slack_payload()))
            if error:
                failures.append(f"slack: {error}")
        return failures

    def _post_json(self, payload: dict[str, Any]) -> None:
        status = self._post(self._webhook_url(), json.dumps(payload).encode(), SLACK_TIMEOUT_SECONDS)
        if status >= 300:
            raise RuntimeError(f"Slack answered HTTP {status}")

    def _retry(self, send: Callable[[], object]) -> str | None:
        last = ""
        for attempt in range(SEND_ATTEMPTS):
            try:
                send()
                return None
            except Exception as exc:  # any channel error is reported, never raised
                last = f"{type(exc).__name__}: {_redact(str(exc))}"
                if attempt + 1 < SEND_ATTEMPTS:
                    self._sleep(0.2 * 2**attempt)
        return last

    def _webhook_url(self) -> str:
        assert self.slack_secret_arn
        if "url" not in self._webhook:
            secret = self._secrets_factory().get_secret_value(SecretId=self.slack_secret_arn)["SecretString"]
            url = secret.strip()
            if url.startswith("{"):
                data = json.loads(url)
                url = str(data.get("url") or data.get("webhook_url") or "")
            if not url.startswith("https://"):
                raise ValueError("the Slack secret must hold an https webhook URL (or JSON with a 'url' key)")
            self._webhook["url"] = url
        return self._webhook["url"]


def _sns_subject(subject: str) -> str:
    # SNS subjects: ASCII, no line breaks, at most 100 characters.
    return subject.encode("ascii", "replace").decode().replace("\n", " ")[:100]


def _redact(text: str) -> str:
    """Never let a webhook URL reach a log line or a failure message."""
    import re

    return re.sub(r"https://hooks\.slack\.com/\S+", "https://hooks.slack.com/<redacted>", text)
