"""Reset from Slack (issue 18, part 2), through handlers/slack.py on moto with an injected clock: Slack's
signed requests in, what Slack is told and what the audit trail shows out."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

import handlers.slack
from guardrail.core.models import Level
from guardrail.service.runtime import default_runtime
from guardrail.service.slack_reset import SlackReset, default_slack_reset
from guardrail.store.flags import FlagStore
from tests.support.common import TABLE, Clock, Output
from tests.support.slack import (
    ALERT_TS,
    BOT_TOKEN,
    CHANNEL,
    SIGNING_SECRET,
    FakeSlack,
    click,
    submit,
    url_request,
    user,
)
from tests.support.world import World, batch


class Slack:
    """The endpoint with its clock and a recorder for Slack's Web API, installed for the handler."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.clock = Clock(datetime.now(UTC))
        self.api = FakeSlack()
        runtime = default_runtime()
        default_slack_reset.install(SlackReset(runtime=runtime, now=self.clock, slack=self.api))

    def post(self, payload: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        return self.send(url_request(payload, at=self.clock(), **kwargs))

    def send(self, event: dict[str, Any]) -> dict[str, Any]:
        return handlers.slack.handler(event, self.world.ctx)  # type: ignore[arg-type]

    def buttons(self) -> dict[str, dict[str, Any]]:
        """The Reset / Snooze buttons of the last alert the webhook got."""
        (block,) = [b for b in self.world.slack[-1]["blocks"] if b["type"] == "actions"]
        return {e["text"]["text"]: e for e in block["elements"]}


@pytest.fixture
def slack(world: World, monkeypatch: pytest.MonkeyPatch) -> Iterator[Slack]:
    secret = boto3.client("secretsmanager", region_name="us-east-1").create_secret(
        Name="slack-app", SecretString=json.dumps({"signing_secret": SIGNING_SECRET, "bot_token": BOT_TOKEN})
    )["ARN"]
    monkeypatch.setenv("GUARDRAIL_SLACK_APP_SECRET_ARN", secret)
    monkeypatch.setenv("GUARDRAIL_SLACK_ONCALL_USERS", "U0ONCALL,T0001/U0BOB")
    monkeypatch.setenv("GUARDRAIL_SLACK_BUTTONS", "true")
    default_runtime.cache_clear()
    yield Slack(world)
    default_slack_reset.cache_clear()


@pytest.fixture
def output(capsys: pytest.CaptureFixture[str]) -> Iterator[Output]:
    from guardrail.service.observability import logger

    out = Output(capsys)
    yield out
    logger._logger.removeHandler(out.handler)
    assert SIGNING_SECRET not in out.text() and BOT_TOKEN not in out.text()  # secrets never logged


def resets(scope: str = "global") -> list[Any]:
    history = FlagStore(boto3.client("dynamodb", region_name="us-east-1"), TABLE).history(scope)
    return [e for e in history if e.action.endswith("->normal")]


def shut_down(world: World) -> None:
    world.usage(batch("a", 60))  # $29.70 > $25
    assert world.flag().level == Level.SHUTDOWN and world.concurrency("chat-api") == 0


def test_reset_button_dialog_and_thread_answer_with_a_valid_signature(world: World, slack: Slack) -> None:
    shut_down(world)
    reset = slack.buttons()["Reset"]
    assert reset["confirm"]["confirm"]["text"] == "Continue"  # Slack asks before anything is sent

    response = slack.post(click(reset))
    assert response["statusCode"] == 200
    (view,) = slack.api.views
    assert view["trigger_id"] == "trig-1" and view["blocks"][-1]["element"]["min_length"] == 1
    assert world.flag().level == Level.SHUTDOWN and resets() == []  # a click alone changes nothing

    response = slack.post(submit(view, "  retry loop fixed in chat-api  "))
    assert response == {"statusCode": 200, "body": ""}  # closes the dialog
    assert world.flag().level == Level.NORMAL and world.concurrency("chat-api") == 7
    assert world.concurrency("worker") is None
    (entry,) = resets()
    assert entry.actor == "slack:T0001/U0ONCALL (alice)" and entry.reason == "retry loop fixed in chat-api"
    (answer,) = slack.api.messages
    assert answer["channel"] == CHANNEL and answer["thread_ts"] == ALERT_TS
    assert "done: restored chat-api to 7" in answer["text"] and "FAILED" not in answer["text"]
    assert slack.api.tokens and set(slack.api.tokens) == {BOT_TOKEN}


def test_snooze_button_resets_and_holds_escalation_for_one_hour(world: World, slack: Slack) -> None:
    shut_down(world)
    slack.post(click(slack.buttons()["Snooze 1 h"]))
    (view,) = slack.api.views
    slack.post(submit(view, "deploying the fix"))
    flag = world.flag()
    assert flag.level == Level.NORMAL and flag.rearm is not None and flag.rearm.snooze_until is not None
    assert abs((flag.rearm.snooze_until - slack.clock()).total_seconds() - 3600) < 5
    (answer,) = slack.api.messages
    assert "Snooze 1 h" in answer["text"] and "No escalation before" in answer["text"]


def test_a_wrong_signature_is_refused_and_nothing_changes(world: World, slack: Slack, output: Output) -> None:
    shut_down(world)
    button = slack.buttons()["Reset"]
    response = slack.post(click(button), secret="not-the-signing-secret")
    assert response["statusCode"] == 401
    view = {
        "type": "modal",
        "callback_id": "guardrail_reset",
        "private_metadata": json.dumps({"scope": "global", "snooze": False, "channel": CHANNEL, "ts": ALERT_TS}),
    }
    assert slack.post(submit(view, "forged"), secret="forged-secret")["statusCode"] == 401
    event = url_request(submit(view, "forged"), at=slack.clock())
    event["headers"].pop("x-slack-signature")
    assert slack.send(event)["statusCode"] == 401
    assert slack.api.said_nothing() and resets() == [] and world.concurrency("chat-api") == 0
    assert output.metric("SlackRequestsRefused") == 3
    whys = [e["why"] for e in output.log_lines("WARNING")]
    assert whys == ["wrong Slack signature"] * 2 + ["no Slack signature or timestamp"]


def test_a_request_older_than_five_minutes_is_refused(world: World, slack: Slack) -> None:
    shut_down(world)
    button = slack.buttons()["Reset"]
    assert slack.post(click(button), age_seconds=301)["statusCode"] == 401
    assert slack.api.said_nothing()
    assert slack.post(click(button), age_seconds=299)["statusCode"] == 200  # still inside the window
    assert len(slack.api.views) == 1 and resets() == []


def test_a_replayed_request_is_refused_and_resets_once(world: World, slack: Slack) -> None:
    shut_down(world)
    slack.post(click(slack.buttons()["Reset"]))
    (view,) = slack.api.views
    event = url_request(submit(view, "loop fixed"), at=slack.clock())
    assert slack.send(event)["statusCode"] == 200
    world.usage(batch("b", 60))  # shut down again after the reset
    assert world.flag().level == Level.SHUTDOWN
    assert slack.send(event)["statusCode"] == 401  # the same signed request, a second time
    assert world.flag().level == Level.SHUTDOWN and len(resets()) == 1 and len(slack.api.messages) == 1


def test_a_user_not_on_the_allowlist_is_refused_in_slack_and_nothing_is_audited(world: World, slack: Slack) -> None:
    shut_down(world)
    mallory = user("U0MALLORY", "mallory")
    slack.post(click(slack.buttons()["Reset"], who=mallory))
    assert slack.api.views == []
    (told,) = slack.api.ephemeral
    assert told["user"] == "U0MALLORY" and "not on the guardrail's on-call allowlist" in told["text"]
    # Even with the dialog (someone else opened it), the submission is checked again.
    view = {
        "type": "modal",
        "callback_id": "guardrail_reset",
        "private_metadata": json.dumps({"scope": "global", "snooze": False, "channel": CHANNEL, "ts": ALERT_TS}),
    }
    response = slack.post(submit(view, "trust me", who=mallory))
    errors = json.loads(response["body"])
    assert errors["response_action"] == "errors" and "allowlist" in errors["errors"]["reason"]
    # A team-qualified entry matches only that team.
    slack.post(click(slack.buttons()["Reset"], who={**user("U0BOB", "bob"), "team_id": "T0OTHER"}))
    assert resets() == [] and world.concurrency("chat-api") == 0 and len(slack.api.messages) == 0


def test_an_unknown_scope_is_refused_with_the_reason(world: World, slack: Slack) -> None:
    shut_down(world)
    button = {**slack.buttons()["Reset"], "value": json.dumps({"scope": "app:<!channel> nope"})}
    assert slack.post(click(button))["statusCode"] == 200
    (told,) = slack.api.ephemeral
    assert (
        "Reset refused: no budget governs scope" in told["text"] and "&lt;!channel&gt;" in told["text"]
    )  # inert in Slack
    assert "<!channel>" not in told["text"] and told["blocks"][0]["text"]["verbatim"] is True
    assert slack.api.views == [] and resets() == [] and resets("app:<!channel> nope") == []


def test_a_restore_aws_refuses_is_answered_with_the_failure_and_the_retry_command(world: World, slack: Slack) -> None:
    shut_down(world)
    lam = default_runtime().client("lambda")

    def refuse(params: dict[str, Any], **_: Any) -> Any:
        if "chat-api" in str(params.get("url_path")):
            error = {"Code": "InvalidParameterValueException", "Message": "unreserved concurrency would fall below 100"}
            return _Http(400), {"Error": error, "ResponseMetadata": {"HTTPStatusCode": 400}}
        return None

    lam.meta.events.register("before-call.lambda.PutFunctionConcurrency", refuse)
    slack.post(click(slack.buttons()["Reset"]))
    (view,) = slack.api.views
    slack.post(submit(view, "it's fixed; don't $(rm -rf) me"))
    assert world.concurrency("chat-api") == 0 and world.concurrency("worker") is None
    assert world.flag().targets["chat-api"].status == "restore_failed"
    (entry,) = resets()
    assert entry.actor == "slack:T0001/U0ONCALL (alice)"
    (answer,) = slack.api.messages
    text = answer["text"]
    assert "FAILED" in text and "chat-api" in text and "below 100" in text
    assert "```guardrail reset --scope global --reason 'it'\"'\"'s fixed; don'\"'\"'t $(rm -rf) me'```" in text


def test_a_second_reset_of_a_scope_already_reset_is_told_there_is_nothing_to_do(world: World, slack: Slack) -> None:
    shut_down(world)
    button = slack.buttons()["Reset"]
    slack.post(click(button))
    (view,) = slack.api.views
    slack.post(click(button, who=user("U0BOB", "bob")))  # bob opens the same dialog (T0001/U0BOB is allowed)
    assert slack.post(submit(view, "loop fixed"))["body"] == ""
    errors = json.loads(slack.post(submit(slack.api.views[1], "me too", who=user("U0BOB", "bob")))["body"])
    assert errors["errors"]["reason"].startswith("Nothing to reset: scope global is normal")
    slack.clock.at += timedelta(seconds=30)  # a new click (the same one again would be a replay)
    slack.post(click(button))
    assert slack.api.ephemeral[-1]["text"].startswith("Nothing to reset")
    assert len(resets()) == 1 and len(slack.api.messages) == 1


class _Http:
    def __init__(self, status: int) -> None:
        self.status_code = status
        self.headers: dict[str, str] = {}


@pytest.mark.parametrize("level", [Level.ALERT, Level.THROTTLE, Level.SHUTDOWN])
def test_buttons_only_at_throttle_and_shutdown_with_the_scope_inert(level: Level) -> None:
    from decimal import Decimal

    from guardrail.service.notify import AlertMessage

    message = AlertMessage(
        scope="app:<!here>",
        from_level=Level.NORMAL,
        to_level=level,
        window="day",
        spend=Decimal(30),
        thresholds={lvl: Decimal(lvl.value * 5) for lvl in (Level.ALERT, Level.THROTTLE, Level.SHUTDOWN)},
        reason="threshold",
    )
    assert not [b for b in message.slack_payload()["blocks"] if b["type"] == "actions"]  # off unless configured
    actions = [b for b in message.slack_payload(buttons=True)["blocks"] if b["type"] == "actions"]
    if level < Level.THROTTLE:
        assert actions == []
        return
    (block,) = actions
    labels = [e["text"]["text"] for e in block["elements"]]
    assert labels == ["Reset", "Snooze 1 h"]
    for element in block["elements"]:
        assert json.loads(element["value"]) == {"scope": "app:<!here>"}
        text = element["confirm"]["text"]
        assert "&lt;!here&gt;" in text["text"] and text["verbatim"] is True
