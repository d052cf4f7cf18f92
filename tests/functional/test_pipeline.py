"""Enforcement pipeline end to end on moto: handlers -> engine -> effects (SNS, Slack, Lambda concurrency)."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

# Import every pydantic model before freezegun patches datetime (a model built under it would be broken).
import aws_lambda_powertools.utilities.parser.models  # noqa: F401
import boto3
import pytest

import guardrail.service.oncall  # noqa: F401
import handlers.alarm
import handlers.reset
import handlers.schedule
import handlers.usage
from guardrail.core.models import Level
from guardrail.service.runtime import default_runtime
from guardrail.store.flags import FlagStore
from tests.support.common import TABLE, load_event
from tests.support.factories import log_line, logs_event, record
from tests.support.world import WEBHOOK, World, batch


def test_escalation_shutdown_replay_reset_and_second_cycle(world: World) -> None:
    batches = [batch("a", 11), batch("b", 10), batch("c", 31)]  # $5.445, $10.395, $25.74
    first = world.usage(batches[0])
    assert first["transitions"] == ["global: normal -> alert"]
    sns = world.sns_messages()
    assert len(sns) == 1 and len(world.slack) == 1
    assert "alert" in sns[0] and "$5.45" in sns[0] and "guardrail reset --scope global" in sns[0]

    world.usage(batches[1])
    flag = world.flag()
    assert flag.level == Level.THROTTLE and flag.model_downgrades["claude-sonnet"] == "claude-haiku"
    assert world.concurrency("chat-api") == 7

    world.usage(batches[2])
    assert world.flag().level == Level.SHUTDOWN
    assert world.concurrency("chat-api") == 0 and world.concurrency("worker") == 0
    saved = world.flag().targets
    assert (saved["chat-api"].saved, saved["worker"].saved) == (7, None)
    assert len(world.sns_messages()) == 2  # throttle, shutdown: one message per transition
    shutdown_text = world.slack[-1]["text"]
    assert "reserved concurrency 0 on chat-api (was 7)" in shutdown_text
    assert "worker (was none)" in shutdown_text

    # Replaying every batch changes nothing: no spend, no message, no effect.
    before = world.flag()
    for b in batches:
        replay = world.usage(b)
        assert replay["recorded"] == 0 and replay["transitions"] == []
    assert world.flag() == before and world.sns_messages() == [] and len(world.slack) == 3

    result = handlers.reset.handler(
        {"scope": "global", "reason": "loop fixed in chat-api 1.4.2", "actor": "alice"}, world.ctx
    )
    assert result["ok"] and result["to_level"] == "normal"
    assert world.concurrency("chat-api") == 7
    assert world.concurrency("worker") is None  # "none" restored as none, not 0
    assert world.flag().targets == {}

    # Second cycle: thresholds count again from the spend at reset time ($25.74).
    assert world.usage(batch("d", 10))["transitions"] == []
    world.usage(batch("e", 45))
    assert world.flag().level == Level.SHUTDOWN
    assert world.concurrency("chat-api") == 0 and world.concurrency("worker") == 0
    result = handlers.reset.handler({"scope": "global", "reason": "second drill", "actor": "bob"}, world.ctx)
    assert result["ok"]
    assert world.concurrency("chat-api") == 7 and world.concurrency("worker") is None
    history = FlagStore(boto3.client("dynamodb", region_name="us-east-1"), TABLE).history("global")
    resets = [e for e in history if e.action.endswith("->normal")]
    # Direct invokes carry no verified identity: the claimed names are notes beside an unverified actor.
    assert {e.actor for e in resets} == {"unverified:direct-invoke"}
    assert any("claimed actor alice" in e.reason for e in resets) and any(
        "claimed actor bob" in e.reason for e in resets
    )


def test_reset_without_reason_refuses_and_changes_nothing(world: World) -> None:
    world.usage(batch("a", 60))
    result = handlers.reset.handler({"scope": "global", "reason": "   ", "actor": "alice"}, world.ctx)
    assert not result["ok"] and "reason" in result["error"]
    assert world.flag().level == Level.SHUTDOWN and world.concurrency("chat-api") == 0


@pytest.mark.parametrize(
    ("event_file", "expected"),
    [
        ("eventbridge-alarm-state-change-single-metric.json", None),  # state depends on the sample
        ("eventbridge-alarm-state-change-metric-math.json", None),
        ("powertools-cloudWatchAlarmEventSingleMetric.json", None),
        ("powertools-cloudWatchAlarmEventCompositeMetric.json", None),
        ("sns-cloudwatch-alarm-notification.json", None),
    ],
)
def test_every_sample_alarm_shape_is_handled(world: World, event_file: str, expected: None) -> None:
    event = load_event(event_file)
    result = handlers.alarm.handler(event, world.ctx)
    (entry,) = result["results"]
    assert entry["alarm"] and entry["state"] in ("ALARM", "OK", "INSUFFICIENT_DATA")
    levels = json.loads(__import__("os").environ["GUARDRAIL_ALARM_LEVELS"])
    if entry["state"] == "ALARM":
        assert result["changed"]
        assert world.flag().level == Level.parse(levels[entry["alarm"]])
    else:
        assert not result["changed"] and world.flag().level == Level.NORMAL


def test_unmapped_alarm_changes_nothing_and_says_so(world: World) -> None:
    event = load_event("eventbridge-alarm-state-change-single-metric.json")
    event["detail"]["alarmName"] = "<b>someone-elses-alarm</b>"
    event["detail"]["state"]["value"] = "ALARM"
    result = handlers.alarm.handler(event, world.ctx)
    assert not result["changed"]
    assert "not mapped" in result["results"][0]["detail"]
    assert world.flag().level == Level.NORMAL


def test_alarm_escalates_then_ok_clears_what_it_set(world: World) -> None:
    event = load_event("sns-cloudwatch-alarm-notification.json")
    alarm = json.loads(event["Records"][0]["Sns"]["Message"])
    assert handlers.alarm.handler(event, world.ctx)["changed"]
    assert world.flag().level == Level.THROTTLE
    alarm["NewStateValue"] = "OK"
    event["Records"][0]["Sns"]["Message"] = json.dumps(alarm)
    assert handlers.alarm.handler(event, world.ctx)["changed"]
    assert world.flag().level == Level.NORMAL


def test_sns_and_slack_down_do_not_stop_the_shutdown(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GUARDRAIL_TOPIC_ARN", "arn:aws:sns:us-east-1:123456789012:deleted-topic")
    default_runtime.cache_clear()
    world.slack_fails = True
    world.usage(batch("a", 60))
    assert world.flag().level == Level.SHUTDOWN
    assert world.concurrency("chat-api") == 0 and world.concurrency("worker") == 0
    report = default_runtime().effects.reports[-1]
    assert any(f.startswith("sns:") for f in report.notification_failures)
    assert any("Slack did not answer" in f for f in report.notification_failures)
    assert all(WEBHOOK not in f for f in report.notification_failures)


def test_crash_between_saved_and_zero_is_repaired_by_schedule(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    from guardrail.service.effects import Effects

    def crash(self: Effects, flag: Any, report: Any, **_: Any) -> Any:
        raise RuntimeError("Lambda timed out after saving")

    with monkeypatch.context() as m:
        m.setattr(Effects, "enforce_zero", crash)
        with pytest.raises(RuntimeError, match="timed out"):
            world.usage(batch("a", 60))
    flag = world.flag()
    assert flag.level == Level.SHUTDOWN and not flag.applied
    assert flag.targets["chat-api"].saved == 7 and world.concurrency("chat-api") == 7  # saved, not yet 0
    result = handlers.schedule.handler({"source": "aws.events", "detail-type": "Scheduled Event"}, world.ctx)
    assert result["repaired"]
    assert world.concurrency("chat-api") == 0 and world.concurrency("worker") == 0
    assert world.flag().applied
    # The saved value survived the repair: reset restores 7, not 0.
    handlers.reset.handler({"scope": "global", "reason": "after crash", "actor": "alice"}, world.ctx)
    assert world.concurrency("chat-api") == 7


def test_drift_is_set_back_to_zero_by_schedule(world: World) -> None:
    world.usage(batch("a", 60))
    world.lam.put_function_concurrency(FunctionName="chat-api", ReservedConcurrentExecutions=50)  # someone "fixed" it
    result = handlers.schedule.handler({}, world.ctx)
    assert any("chat-api" in r for r in result["repaired"])
    assert world.concurrency("chat-api") == 0
    assert world.flag().targets["chat-api"].saved == 7


def test_dry_run_leaves_targets_and_flags_untouched_but_says_what_it_would_do(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GUARDRAIL_MODE", "dry-run")
    default_runtime.cache_clear()
    world.usage(batch("a", 60))
    assert world.concurrency("chat-api") == 7 and world.concurrency("worker") is None
    assert world.flag().level == Level.NORMAL  # the flag guarded clients read
    assert world.flag(dry_run=True).level == Level.SHUTDOWN
    text = world.slack[-1]["text"]
    assert "DRY-RUN" in text and "Would have done" in text and "chat-api (now 7)" in text
    assert len(world.sns_messages()) == 1  # one jump normal -> shutdown: one message


def test_refused_restore_keeps_saved_value_and_tells_on_call(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    from botocore.exceptions import ClientError

    world.usage(batch("a", 60))
    runtime = default_runtime()
    real = runtime.effects.lambda_client.put_function_concurrency

    def refuse(**kwargs: Any) -> Any:
        if kwargs["ReservedConcurrentExecutions"] > 0:
            raise ClientError(
                {
                    "Error": {
                        "Code": "InvalidParameterValueException",
                        "Message": "Specified ReservedConcurrentExecutions for function decreases account's "
                        "UnreservedConcurrentExecution below its minimum value of [100].",
                    }
                },
                "PutFunctionConcurrency",
            )
        return real(**kwargs)

    with monkeypatch.context() as m:
        m.setattr(runtime.effects.lambda_client, "put_function_concurrency", refuse)
        result = handlers.reset.handler({"scope": "global", "reason": "drill", "actor": "alice"}, world.ctx)
    assert not result["ok"]
    assert any("chat-api" in f and "minimum value" in f and "put-function-concurrency" in f for f in result["failures"])
    flag = world.flag()
    assert flag.level == Level.NORMAL
    assert flag.targets["chat-api"].saved == 7 and flag.targets["chat-api"].status == "restore_failed"
    assert world.concurrency("worker") is None  # the other target was restored
    # The schedule retries the restore once AWS allows it.
    default_runtime.cache_clear()
    handlers.schedule.handler({}, world.ctx)
    assert world.concurrency("chat-api") == 7 and world.flag().targets == {}


def test_rollover_clears_throttle_next_day_via_schedule(world: World) -> None:
    world.usage(batch("a", 21))
    assert world.flag().level == Level.THROTTLE
    from datetime import UTC, datetime, timedelta

    from guardrail.service import schedule
    from guardrail.service.runtime import build

    tomorrow = (datetime.now(UTC) + timedelta(days=1)).replace(hour=0, minute=5)
    runtime = build(now=lambda: tomorrow)
    report = schedule.run(runtime.engine, runtime.effects, None)
    assert report.transitions == ["global: throttle -> normal (rollover)"]
    assert world.flag().level == Level.NORMAL and world.flag().trigger == "rollover"


def test_reconciliation_alerts_on_untracked_spend(world: World) -> None:
    from datetime import UTC, datetime

    cw = boto3.client("cloudwatch", region_name="us-east-1")
    cw.put_metric_data(
        Namespace="AWS/Bedrock",
        MetricData=[
            {
                "MetricName": name,
                "Dimensions": [{"Name": "ModelId", "Value": "us.anthropic.claude-sonnet-4-5-20250929-v1:0"}],
                "Timestamp": datetime.now(UTC),
                "Value": value,
            }
            for name, value in (("InputTokenCount", 2_000_000), ("OutputTokenCount", 100_000))
        ],
    )
    world.usage(batch("a", 2))  # the ledger saw $0.99 of the $8.25 Bedrock metered
    result = handlers.schedule.handler({}, world.ctx)
    rec = result["reconciliation"]
    assert rec["alert"] == "untracked Bedrock spend"
    assert Decimal(rec["bedrock_metrics_usd"]) == Decimal("8.25") and Decimal(rec["ledger_usd"]) == Decimal("0.99")
    assert any("untracked Bedrock spend" in m for m in world.sns_messages())


def test_slack_message_escapes_outside_text(world: World) -> None:
    from guardrail.core.models import Level as L
    from guardrail.service.notify import AlertMessage

    message = AlertMessage(
        scope="app:<script>&",
        from_level=L.NORMAL,
        to_level=L.ALERT,
        window="day",
        spend=Decimal(6),
        thresholds={L.ALERT: Decimal(5), L.THROTTLE: Decimal(10), L.SHUTDOWN: Decimal(25)},
        reason="alarm <b>x</b> & y",
        top={"apps": [("<evil>", Decimal(1))]},
    )
    payload = json.dumps(message.slack_payload())
    assert "<script>" not in payload and "<evil>" not in payload and "<b>" not in payload
    assert "&lt;script&gt;&amp;" in payload


def test_second_reset_retries_a_refused_restore_and_alert_counts_from_baseline(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    from botocore.exceptions import ClientError

    world.usage(batch("a", 60))
    runtime = default_runtime()
    real = runtime.effects.lambda_client.put_function_concurrency

    def refuse(**kwargs: Any) -> Any:
        if kwargs["ReservedConcurrentExecutions"] > 0:
            raise ClientError({"Error": {"Code": "InvalidParameterValueException", "Message": "pool"}}, "Put")
        return real(**kwargs)

    with monkeypatch.context() as m:
        m.setattr(runtime.effects.lambda_client, "put_function_concurrency", refuse)
        first = handlers.reset.handler({"scope": "global", "reason": "drill", "actor": "alice"}, world.ctx)
    assert not first["ok"] and world.concurrency("chat-api") == 0
    # On-call frees concurrency and runs the reset again, as the failure message says.
    again = handlers.reset.handler({"scope": "global", "reason": "pool freed", "actor": "alice"}, world.ctx)
    assert again["ok"] and world.concurrency("chat-api") == 7 and world.flag().targets == {}
    # The reset's message projects the next level from the re-arm baseline ($29.70 + $5), not from $5.
    assert "alert at $34.70" in world.slack[-1]["text"]


def test_unknown_model_is_counted_at_ceiling_and_alerted_once_a_day(world: World) -> None:
    from datetime import UTC, datetime

    def mystery(rid: str) -> dict[str, Any]:
        r = record(rid, model="acme.mystery-model-v9:0", input_tokens=1000, output_tokens=1000, at=datetime.now(UTC))
        return logs_event([log_line(r)])

    first = world.usage(mystery("m1"))
    assert first["recorded"] == 1 and first["unknown_models"] == ["acme.mystery-model-v9:0"]
    assert Decimal(first["spend"]["global"]) == Decimal("0.09")  # ceiling 15 / 75 per 1M, never $0
    world.usage(mystery("m2"))
    notices = [m for m in world.sns_messages() if "acme.mystery-model-v9:0" in m]
    assert len(notices) == 1 and "GUARDRAIL_PRICE_OVERRIDES" in notices[0]
    assert sum("acme.mystery-model-v9:0" in p["text"] for p in world.slack) == 1


def test_throttling_storm_is_counted_as_failed_requests_not_quarantined(world: World) -> None:
    from datetime import UTC, datetime

    def throttled(rid: str) -> str:
        doc = json.loads(log_line(record(rid, at=datetime.now(UTC))))
        doc.update(errorCode="ThrottlingException", input={"inputContentType": "application/json"}, output=None)
        return json.dumps(doc)

    out = world.usage(logs_event([throttled(f"t{i}") for i in range(20)]))
    assert (out["recorded"], out["quarantined"], out["failed_requests"]) == (0, [], 20)
    assert out["unknown_models"] == [] and world.sns_messages() == []


def test_embeddings_and_provisioned_models_set_off_no_unknown_model_alert(world: World) -> None:
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    provisioned = "arn:aws:bedrock:us-east-1:123456789012:provisioned-model/p1"
    out = world.usage(
        logs_event(
            [
                log_line(
                    record("e1", model="amazon.titan-embed-text-v2:0", input_tokens=1200, output_tokens=0, at=now)
                ),
                log_line(record("p1", model=provisioned, input_tokens=500, output_tokens=500, at=now)),
                log_line(record("p2", model=provisioned, input_tokens=500, output_tokens=500, at=now)),
            ]
        )
    )
    assert out["recorded"] == 3 and out["unknown_models"] == []
    assert out["not_token_priced"] == {provisioned: 2}
    assert Decimal(out["spend"]["global"]) == Decimal("0.000024")
    assert not any("unknown" in m.lower() for m in world.sns_messages())
