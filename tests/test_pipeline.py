"""Enforcement pipeline end to end on moto: handlers -> engine -> effects (SNS, Slack, Lambda concurrency)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

# Import every pydantic model before freezegun patches datetime (a model built under it would be broken).
import aws_lambda_powertools.utilities.parser.models  # noqa: F401
import boto3
import pytest

import guardrail.oncall  # noqa: F401
import handlers.alarm
import handlers.reset
import handlers.schedule
import handlers.usage
from guardrail.embedded_aws import create_function
from guardrail.flags import FlagStore
from guardrail.models import Level
from guardrail.runtime import default_runtime
from tests.conftest import TABLE, FakeLambdaContext, load_event
from tests.factories import log_line, logs_event, record

WEBHOOK = "https://hooks.slack.com/services/T000/B000/SECRETSECRET"


class World:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.lam = boto3.client("lambda", region_name="us-east-1")
        iam = boto3.client("iam", region_name="us-east-1")
        role = iam.create_role(RoleName="fn", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        create_function(self.lam, role, "chat-api", 7)
        create_function(self.lam, role, "worker", None)
        sns = boto3.client("sns", region_name="us-east-1")
        self.sqs = boto3.client("sqs", region_name="us-east-1")
        self.topic = sns.create_topic(Name="guardrail-alerts")["TopicArn"]
        self.queue = self.sqs.create_queue(QueueName="inbox")["QueueUrl"]
        queue_arn = self.sqs.get_queue_attributes(QueueUrl=self.queue, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        sns.subscribe(
            TopicArn=self.topic, Protocol="sqs", Endpoint=queue_arn, Attributes={"RawMessageDelivery": "true"}
        )
        secret = boto3.client("secretsmanager", region_name="us-east-1").create_secret(
            Name="slack-webhook", SecretString=WEBHOOK
        )["ARN"]
        self.slack: list[dict[str, Any]] = []
        self.slack_fails = False

        def post(url: str, body: bytes, timeout: float) -> int:
            assert url == WEBHOOK
            if self.slack_fails:
                raise TimeoutError("Slack did not answer in 3 s")
            self.slack.append(json.loads(body))
            return 200

        monkeypatch.setattr("guardrail.notify.http_post", post)
        for key, value in {
            "GUARDRAIL_TABLE_NAME": TABLE,
            "GUARDRAIL_TOPIC_ARN": self.topic,
            "GUARDRAIL_SLACK_SECRET_ARN": secret,
            "GUARDRAIL_TARGET_FUNCTIONS": "chat-api,worker",
            "GUARDRAIL_OWN_FUNCTIONS": "guardrail-usage,guardrail-alarm,guardrail-reset,guardrail-schedule",
            "GUARDRAIL_ALARM_LEVELS": json.dumps(
                {
                    "ServerCpuTooHigh": "alert",
                    "bedrock-spend-throttle": "throttle",
                    "Test alert": "throttle",
                    "TotalNetworkTrafficTooHigh": "shutdown",
                    "CompositeDemo.Main": "alert",
                }
            ),
        }.items():
            monkeypatch.setenv(key, value)
        default_runtime.cache_clear()
        self.ctx = FakeLambdaContext()

    def sns_messages(self) -> list[str]:
        out = []
        while True:
            resp = self.sqs.receive_message(QueueUrl=self.queue, MaxNumberOfMessages=10, WaitTimeSeconds=0)
            msgs = resp.get("Messages", [])
            if not msgs:
                return out
            for m in msgs:
                out.append(m["Body"])
                self.sqs.delete_message(QueueUrl=self.queue, ReceiptHandle=m["ReceiptHandle"])

    def concurrency(self, name: str) -> int | None:
        return self.lam.get_function_concurrency(FunctionName=name).get("ReservedConcurrentExecutions")

    def flag(self, dry_run: bool = False) -> Any:
        return FlagStore(boto3.client("dynamodb", region_name="us-east-1"), TABLE, dry_run=dry_run).get("global")

    def usage(self, event: dict[str, Any]) -> dict[str, Any]:
        return handlers.usage.handler(event, self.ctx)  # type: ignore[arg-type]


@pytest.fixture
def world(ddb: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    yield World(monkeypatch)
    default_runtime.cache_clear()


def batch(prefix: str, n: int) -> dict[str, Any]:
    # Each record: 100k input + 10k output tokens of Sonnet 4.5 (us.) = $0.33 + $0.165 = $0.495
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    return logs_event(
        [
            log_line(record(f"{prefix}-{i}", input_tokens=100_000, output_tokens=10_000, at=now, app="chat-api"))
            for i in range(n)
        ]
    )


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
    actors = [e.actor for e in FlagStore(boto3.client("dynamodb", region_name="us-east-1"), TABLE).history("global")]
    assert "alice" in actors and "bob" in actors


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
    from guardrail.effects import Effects

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

    from guardrail import schedule
    from guardrail.runtime import build

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
    from guardrail.models import Level as L
    from guardrail.notify import AlertMessage

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
