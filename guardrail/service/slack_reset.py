"""Reset from Slack: the alert's Reset / Snooze 1 h buttons, the reason dialog, the audited reset.

Two requests per reset, both signed by Slack and POSTed to the function URL:

1. `block_actions` (a button, after Slack's confirm dialog): the clicker must be on the on-call allowlist and
   the scope one a reset may name; then a modal opens (`views.open` with the bot token) whose required text
   input is the reason. Refusals go to the clicker alone (`chat.postEphemeral`).
2. `view_submission` (the modal): the same checks again, then the same reset as the CLI (guardrail.service.
   oncall) with the actor `slack:<team>/<user id> (<name>)`, and the result in the alert's thread
   (`chat.postMessage`): what was restored, what failed and the CLI command to retry.

Before either: the Slack signature (slack-sdk's SignatureVerifier, signing secret from Secrets Manager), a
timestamp at most five minutes from now, and a request never seen before (guardrail.store.replays). A
request failing those gets HTTP 401 and no answer in Slack: nothing in it can be trusted to say where to.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol
from urllib.parse import parse_qs

from cachetools import TTLCache
from pydantic import ValidationError

from guardrail.core.errors import ResetRefused, ScopeNotFound
from guardrail.core.models import Level, reset_command
from guardrail.core.text import one_line, shell_quote
from guardrail.service.notify import RESET_ACTION, SNOOZE_ACTION, mrkdwn, short, slack_escape
from guardrail.service.oncall import ResetRequest, check_scope, reset
from guardrail.service.runtime import Runtime
from guardrail.store.replays import first_time

MAX_AGE = timedelta(minutes=5)  # Slack's own advice; older requests are refused
SNOOZE = timedelta(hours=1)
CALLBACK_ID = "guardrail_reset"
REASON_BLOCK = "reason"
MAX_REASON = 2000  # as ResetRequest


class SlackApi(Protocol):
    """The three Web API methods used (slack_sdk.WebClient has them; tests inject a recorder)."""

    def views_open(self, *, trigger_id: str, view: dict[str, Any]) -> Any: ...
    def chat_postMessage(self, *, channel: str, text: str, **kwargs: Any) -> Any: ...
    def chat_postEphemeral(self, *, channel: str, user: str, text: str, **kwargs: Any) -> Any: ...


def web_client(token: str) -> SlackApi:
    from slack_sdk import WebClient  # lazy: only this function needs it

    return WebClient(token=token, timeout=3)


@dataclass
class Response:
    status: int
    body: dict[str, Any] | None = None


@dataclass
class Refused(Exception):
    """A request the endpoint will not act on: `status`, and what the log says (never Slack)."""

    status: int
    why: str


@dataclass
class SlackReset:
    runtime: Runtime
    now: Callable[[], datetime]
    slack: Callable[[str], SlackApi] = web_client
    _secret: TTLCache[str, dict[str, str]] = field(default_factory=lambda: TTLCache(maxsize=1, ttl=300))

    # -- the request ---------------------------------------------------------------------------------------
    def handle(self, headers: Mapping[str, str], body: str) -> Response:
        """Verify, then act on one interaction. Never raises for outside input."""
        secret = self.secret()
        payload = self.verified_payload(secret["signing_secret"], headers, body)
        api = self.slack(secret["bot_token"])
        kind = payload.get("type")
        if kind == "block_actions":
            return self.on_button(api, payload)
        if kind == "view_submission" and (payload.get("view") or {}).get("callback_id") == CALLBACK_ID:
            return self.on_submit(api, payload)
        return Response(200)  # anything else (view_closed, other apps' actions): nothing to do

    def secret(self) -> dict[str, str]:
        arn = self.runtime.settings.slack_app_secret_arn
        if not arn:
            raise Refused(503, "GUARDRAIL_SLACK_APP_SECRET_ARN is not set")
        if "app" not in self._secret:
            text = self.runtime.client("secretsmanager").get_secret_value(SecretId=arn)["SecretString"]
            data = json.loads(text)
            if not isinstance(data, dict) or not data.get("signing_secret") or not data.get("bot_token"):
                raise Refused(503, "the Slack app secret must be JSON with signing_secret and bot_token")
            self._secret["app"] = {"signing_secret": str(data["signing_secret"]), "bot_token": str(data["bot_token"])}
        return self._secret["app"]

    def verified_payload(self, signing_secret: str, headers: Mapping[str, str], body: str) -> dict[str, Any]:
        from slack_sdk.signature import Clock, SignatureVerifier

        lower = {k.lower(): v for k, v in headers.items()}
        timestamp, signature = lower.get("x-slack-request-timestamp", ""), lower.get("x-slack-signature", "")
        if not timestamp.isdigit() or not signature:
            raise Refused(401, "no Slack signature or timestamp")
        now = self.now()
        if abs(now.timestamp() - int(timestamp)) > MAX_AGE.total_seconds():
            raise Refused(401, f"stale request: timestamp {timestamp} is more than 5 minutes from now")

        class _Now(Clock):
            def now(self) -> float:
                return now.timestamp()

        if not SignatureVerifier(signing_secret, clock=_Now()).is_valid(body, timestamp, signature):
            raise Refused(401, "wrong Slack signature")
        settings = self.runtime.settings
        if not first_time(
            self.runtime.client("dynamodb"),
            settings.table_name,
            timestamp=timestamp,
            signature=signature,
            expires_at=now + 2 * MAX_AGE,
        ):
            raise Refused(401, "replayed request: this signature and timestamp were seen before")
        try:
            payload = json.loads(parse_qs(body)["payload"][0])
        except (KeyError, IndexError, ValueError):
            raise Refused(400, "the body holds no payload= JSON") from None
        if not isinstance(payload, dict):
            raise Refused(400, "the payload is not a JSON object")
        return payload

    # -- who -----------------------------------------------------------------------------------------------
    def allowed(self, payload: dict[str, Any]) -> bool:
        team, user = _ids(payload)
        allow = self.runtime.settings.slack_oncall_users
        return bool(user) and (user in allow or f"{team}/{user}" in allow)

    def nothing_to_reset(self, scope: str) -> bool:
        """As the CLI: a normal scope holding no targets (none whose restore AWS refused) has nothing to reset."""
        flag = self.runtime.engine.flags.get(scope)
        return flag.level == Level.NORMAL and not flag.targets

    # -- 1. the button -------------------------------------------------------------------------------------
    def on_button(self, api: SlackApi, payload: dict[str, Any]) -> Response:
        action: dict[str, Any] = next(iter(payload.get("actions") or []), {})
        if action.get("action_id") not in (RESET_ACTION, SNOOZE_ACTION):
            return Response(200)
        container = payload.get("container") or {}
        channel = str(container.get("channel_id") or (payload.get("channel") or {}).get("id") or "")
        _, user = _ids(payload)

        def tell(text: str) -> Response:
            _call(lambda: api.chat_postEphemeral(channel=channel, user=user, text=text, blocks=_section(text)))
            return Response(200)

        if not self.allowed(payload):
            return tell(_not_allowed(payload))
        try:
            scope = json.loads(action.get("value") or "")["scope"]
            if not isinstance(scope, str):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            return tell("Reset refused: the button names no scope.")
        try:
            check_scope(self.runtime, scope)
        except ScopeNotFound as exc:
            return tell(slack_escape(_refusal(exc)))
        snooze = action["action_id"] == SNOOZE_ACTION
        if not snooze and self.nothing_to_reset(scope):
            return tell(_nothing(scope))
        meta = {"scope": scope, "snooze": snooze, "channel": channel, "ts": str(container.get("message_ts") or "")}
        _call(lambda: api.views_open(trigger_id=str(payload.get("trigger_id") or ""), view=_modal(scope, snooze, meta)))
        return Response(200)

    # -- 2. the dialog -------------------------------------------------------------------------------------
    def on_submit(self, api: SlackApi, payload: dict[str, Any]) -> Response:
        view = payload["view"]
        if not self.allowed(payload):
            return _modal_error(_not_allowed(payload))
        try:
            meta = json.loads(view.get("private_metadata") or "")
            scope, snooze, channel, ts = str(meta["scope"]), bool(meta["snooze"]), str(meta["channel"]), str(meta["ts"])
            reason = str(view["state"]["values"][REASON_BLOCK][REASON_BLOCK]["value"] or "").strip()
        except (ValueError, KeyError, TypeError):
            return _modal_error("Reset refused: the dialog lost its scope; click the button again.")
        if not reason:
            return _modal_error("Type what was fixed: the reason goes into the audit trail.")
        try:
            check_scope(self.runtime, scope)
        except ScopeNotFound as exc:
            return _modal_error(_refusal(exc))
        if not snooze and self.nothing_to_reset(scope):  # someone reset it while the dialog was open
            return _modal_error(_nothing(scope))
        snooze_until = self.now() + SNOOZE if snooze else None
        try:
            request = ResetRequest(scope=scope, reason=reason, actor=actor(payload), snooze_until=snooze_until)
            result = reset(self.runtime, request)
        except ValidationError as exc:
            return _modal_error("Reset refused: " + "; ".join(str(e["msg"]) for e in exc.errors()))
        except (ScopeNotFound, ResetRefused) as exc:
            return _modal_error(_refusal(exc))
        text = result_text(result, request, snooze=snooze)
        thread = {"thread_ts": ts} if ts else {}
        _call(lambda: api.chat_postMessage(channel=channel, text=text, blocks=_section(text), **thread))
        return Response(200)  # an empty 200 closes the dialog


def actor(payload: dict[str, Any]) -> str:
    """`slack:<team>/<user id> (<name>)`: ids as Slack signed them, the name as Slack sent it (a note)."""
    team, user = _ids(payload)
    who = payload.get("user") or {}
    name = one_line(short(str(who.get("username") or who.get("name") or "?"), 64))
    return f"slack:{team}/{user} ({name})"


def retry_command(request: ResetRequest, *, snooze: bool) -> str:
    """The CLI command that does what the dialog asked (every outside word shell-quoted)."""
    command = reset_command(request.scope).replace("'<what was fixed>'", shell_quote(request.reason))
    return command + (" --snooze-for 1h" if snooze else "")


def result_text(result: dict[str, Any], request: ResetRequest, *, snooze: bool) -> str:
    """The thread answer, mrkdwn with every outside value escaped."""
    esc = slack_escape
    verb = "Snooze 1 h" if snooze else "Reset"
    lines = [
        f"*{verb}* of scope *{esc(result['scope'])}* by {esc(request.actor)}: "
        f"{result['from_level']} → *{result['to_level']}*",
        f"Reason: {esc(request.reason)}",
    ]
    lines += [f"• done: {esc(a)}" for a in result["restored"]] or ["• done: nothing needed restoring"]
    lines += [f"• FAILED: {esc(f)}" for f in result["failures"]]
    lines += [f"• notification not sent: {esc(f)} (the reset itself is done)" for f in result["notification_failures"]]
    rearm = result.get("rearm") or {}
    if rearm.get("snooze_until"):
        lines.append(f"No escalation before {esc(str(rearm['snooze_until']))}.")
    if result["failures"]:
        lines.append(
            "The saved values are kept; the schedule run retries the restore every few minutes. "
            "Fix the cause and retry from a terminal:"
        )
        lines.append(f"```{esc(retry_command(request, snooze=snooze))}```")
    return "\n".join(lines)


def _ids(payload: dict[str, Any]) -> tuple[str, str]:
    user = payload.get("user") or {}
    team = str((payload.get("team") or {}).get("id") or user.get("team_id") or "")
    return team, str(user.get("id") or "")


def _not_allowed(payload: dict[str, Any]) -> str:
    team, user = _ids(payload)
    return (
        f"Reset refused: Slack user {slack_escape(team)}/{slack_escape(user)} is not on the guardrail's on-call "
        "allowlist (GUARDRAIL_SLACK_ONCALL_USERS). Nothing changed."
    )


def _refusal(exc: Exception) -> str:
    text = str(exc)
    return text if text.lower().startswith("reset refused") else f"Reset refused: {text}. Nothing changed."


def _nothing(scope: str) -> str:
    return (
        f"Nothing to reset: scope {slack_escape(short(scope, 200))} is normal and holds no targets "
        "(someone reset it already? `guardrail history` shows who)."
    )


def _section(text: str) -> list[dict[str, Any]]:
    return [{"type": "section", "text": mrkdwn(text[:3000])}]


def _modal(scope: str, snooze: bool, meta: dict[str, Any]) -> dict[str, Any]:
    what = "restore every effect and hold escalation for 1 h" if snooze else "restore every effect"
    return {
        "type": "modal",
        "callback_id": CALLBACK_ID,
        "private_metadata": json.dumps(meta)[:3000],
        "title": {"type": "plain_text", "text": "Snooze 1 h" if snooze else "Reset"},
        "submit": {"type": "plain_text", "text": "Snooze" if snooze else "Reset"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [
            {"type": "section", "text": mrkdwn(f"This will {what} of scope *{slack_escape(short(scope, 200))}*.")},
            {
                "type": "input",
                "block_id": REASON_BLOCK,
                "label": {"type": "plain_text", "text": "What was fixed (for the audit trail)"},
                "element": {
                    "type": "plain_text_input",
                    "action_id": REASON_BLOCK,
                    "multiline": True,
                    "min_length": 1,
                    "max_length": MAX_REASON,
                },
            },
        ],
    }


def _modal_error(text: str) -> Response:
    return Response(200, {"response_action": "errors", "errors": {REASON_BLOCK: text[:1000]}})


def _call(send: Callable[[], object]) -> None:
    """A Slack answer that fails is logged, never raised: the reset (if any) is done and audited."""
    try:
        send()
    except Exception as exc:  # any Web API or network error
        from guardrail.service.observability import logger

        logger.warning("Slack answer not sent", extra={"error": f"{type(exc).__name__}: {exc}"})


class ProcessSlackReset:
    """The endpoint of this process, built on first use on the process runtime; tests install their own."""

    def __init__(self) -> None:
        self._endpoint: SlackReset | None = None
        self._lock = threading.Lock()

    def __call__(self) -> SlackReset:
        with self._lock:
            if self._endpoint is None:
                from guardrail.service.runtime import default_runtime

                runtime = default_runtime()
                self._endpoint = SlackReset(runtime=runtime, now=runtime.engine.now)
            return self._endpoint

    def install(self, endpoint: SlackReset) -> None:
        self._endpoint = endpoint

    def cache_clear(self) -> None:
        self._endpoint = None


default_slack_reset = ProcessSlackReset()
