"""IAM conformance: each function's real handler scenarios, signed as that function's synthesized role.

For each function the template's inline policies are made concrete (Refs to the moto table, topic and key
standing in for the stack's), put on a role in moto, and the handler runs with the role's session
credentials and the function's synthesized environment, with IAM enforcement on (tests/support/iam.py).
A permission the stack forgets fails a scenario here, not in a real account. Every scenario asserts that
its effects happened and that nothing failed, so dropping any one permission it uses makes it fail: the
default run takes out the permissions a real deploy lacked (ListMetrics, DeleteFunctionConcurrency) and a
few more; `IAM_SWEEP=1` runs `test_each_permission_a_scenario_uses_is_needed`, which takes out, one at a
time, every action each scenario used (about 3 minutes).

moto cannot evaluate condition keys or resource policies: the topic policy that lets this stack's alarms
publish, the key policy that lets CloudWatch use the topic key, and the ingest function's reserved
concurrency are asserted on the template in tests/infra (test_resources.py).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import botocore.loaders
import botocore.session
import pytest

import handlers.alarm
import handlers.reset
import handlers.schedule
import handlers.slack
import handlers.usage
from guardrail.core.models import Level
from guardrail.service.role_deny import POLICY_NAME
from guardrail.service.runtime import build, default_runtime
from guardrail.service.slack_reset import SlackReset, default_slack_reset
from guardrail.store.flags import FlagStore
from guardrail.tools.embedded_aws import create_function
from tests.support.common import TABLE, FakeLambdaContext, load_event
from tests.support.crash import dies
from tests.support.factories import SONNET_45_US, record
from tests.support.iam import (
    assume_function_role,
    enforced_iam,
    function_environment,
    function_statements,
    managed_policy_statements,
    materialize,
    remove_action,
)
from tests.support.slack import BOT_TOKEN, SIGNING_SECRET, FakeSlack, click, submit, url_request
from tests.support.synth import ACCOUNT, PREFIX, REGION, ROLE_TARGET, SLACK_APP_SECRET_ARN, SLACK_SECRET_ARN, Synth
from tests.support.world import WEBHOOK, batch

_LOADER = botocore.loaders.create_loader()
ONCALL = "oncall"
SCHEDULED = {"source": "aws.events", "detail-type": "Scheduled Event"}
Scenario = Callable[["Deployment"], None]


@dataclass
class Deployment:
    """The stack's resources on moto; `run` invokes a handler as one of its functions."""

    synth: Synth
    monkeypatch: pytest.MonkeyPatch
    slack: list[dict[str, Any]] = field(default_factory=list)
    used: list[tuple[str, str]] = field(default_factory=list)  # (action, resource) granted during `run`
    without: dict[str, str] = field(default_factory=dict)  # role -> an action taken out of its policy
    roles: int = 0

    def __post_init__(self) -> None:
        self.lam = boto3.client("lambda", region_name=REGION)
        self.iam = boto3.client("iam", region_name=REGION)
        role = self.iam.create_role(RoleName="app", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        for name, reserved in (("chat-api", 7), ("worker", None), ("acme-batch", 3)):
            create_function(self.lam, role, name, reserved)
        # The role target (an ECS task role, say): a Bedrock caller that is not a Lambda function.
        self.iam.create_role(RoleName="batch-jobs", Path="/teams/", AssumeRolePolicyDocument="{}")
        key = boto3.client("kms", region_name=REGION).create_key()["KeyMetadata"]["Arn"]
        self.topic = boto3.client("sns", region_name=REGION).create_topic(
            Name="alerts", Attributes={"KmsMasterKeyId": key}
        )["TopicArn"]
        self.sqs = boto3.client("sqs", region_name=REGION)
        self.inbox = self.sqs.create_queue(QueueName="inbox")["QueueUrl"]
        inbox_arn = self.sqs.get_queue_attributes(QueueUrl=self.inbox, AttributeNames=["QueueArn"])["Attributes"]
        boto3.client("sns", region_name=REGION).subscribe(
            TopicArn=self.topic, Protocol="sqs", Endpoint=inbox_arn["QueueArn"]
        )
        secret = boto3.client("secretsmanager", region_name=REGION).create_secret(
            Name="guardrail/slack", SecretString=WEBHOOK
        )["ARN"]
        ((table_id, _),) = self.synth.of_type("AWS::DynamoDB::Table").items()
        (topic_id,) = self.synth.of_type("AWS::SNS::Topic")
        (key_id,) = self.synth.of_type("AWS::KMS::Key")
        self.physical = {
            table_id: {"Ref": TABLE, "Arn": f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{TABLE}"},
            topic_id: {"Ref": self.topic, "TopicArn": self.topic},
            key_id: {"Arn": key},
        }
        app_secret = boto3.client("secretsmanager", region_name=REGION).create_secret(
            Name="guardrail/slack-app",
            SecretString=json.dumps({"signing_secret": SIGNING_SECRET, "bot_token": BOT_TOKEN}),
        )["ARN"]
        self.literals = {SLACK_SECRET_ARN: secret, SLACK_APP_SECRET_ARN: app_secret}
        self.monkeypatch.setattr("guardrail.service.notify.http_post", self._post)
        self.ctx = FakeLambdaContext()

    def _post(self, url: str, body: bytes, timeout: float) -> int:
        assert url == WEBHOOK
        self.slack.append(json.loads(body))
        return 200

    def become(self, role: str, *, statements: list[dict[str, Any]] | None = None, **env: str) -> None:
        """The process now is `role`'s function (its environment, its role's session credentials), or
        `oncall`: an engineer running the CLI with the functions' settings and the on-call policy."""
        name = f"{PREFIX}-{role}"
        for key in [k for k in os.environ if k.startswith("GUARDRAIL_")]:
            self.monkeypatch.delenv(key)
        source = f"{PREFIX}-usage" if role == ONCALL else name
        for key, value in function_environment(self.synth, source, self.physical, self.literals).items():
            self.monkeypatch.setenv(key, value)
        for key, value in env.items():
            self.monkeypatch.setenv(key, value)
        if role == ONCALL:
            self.monkeypatch.delenv("AWS_LAMBDA_FUNCTION_NAME", raising=False)
        else:
            self.monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", name)
        if statements is None:
            statements = self.policy(role)
        self.roles += 1
        sts = boto3.client("sts", region_name=REGION)
        for key, value in assume_function_role(self.iam, sts, f"{name}-{self.roles}", statements).items():
            self.monkeypatch.setenv(key, value)
        self.monkeypatch.delenv("AWS_SECURITY_TOKEN", raising=False)
        # A new default session picks up the new credentials; parsed service models are shared.
        core = botocore.session.Session()
        core.register_component("data_loader", _LOADER)
        self.monkeypatch.setattr(boto3, "DEFAULT_SESSION", boto3.Session(botocore_session=core))
        default_runtime.cache_clear()
        default_slack_reset.cache_clear()

    def policy(self, role: str) -> list[dict[str, Any]]:
        if role == ONCALL:
            template = managed_policy_statements(self.synth, "on-call")
        else:
            template = function_statements(self.synth, f"{PREFIX}-{role}")
        statements = [materialize(st, self.physical, self.literals) for st in template]
        return remove_action(statements, self.without[role]) if role in self.without else statements

    def run(self, handler: Callable[..., dict[str, Any]], event: dict[str, Any]) -> dict[str, Any]:
        with enforced_iam(lambda action, arn, ok: self.used.append((action, arn)) if ok else None):
            return handler(event, self.ctx)

    # -- reading the world (outside enforcement) --------------------------------------------------

    def concurrency(self, name: str) -> int | None:
        return self.lam.get_function_concurrency(FunctionName=name).get("ReservedConcurrentExecutions")

    def denied(self) -> bool:
        """The guardrail's deny is on the role target (read outside enforcement)."""
        return POLICY_NAME in self.iam.list_role_policies(RoleName="batch-jobs")["PolicyNames"]

    def spend(self, scope: str) -> tuple[int, int]:
        """Requests and input tokens the scope's counters hold (read outside enforcement)."""
        totals = build().engine.scope_totals(scope)
        return totals.requests, totals.input_tokens

    def flag(self, scope: str = "global") -> Any:
        return FlagStore(boto3.client("dynamodb", region_name=REGION), TABLE).get(scope)

    def sns_messages(self) -> list[str]:
        out: list[str] = []
        while msgs := self.sqs.receive_message(QueueUrl=self.inbox, MaxNumberOfMessages=10).get("Messages", []):
            for m in msgs:
                out.append(m["Body"])
                self.sqs.delete_message(QueueUrl=self.inbox, ReceiptHandle=m["ReceiptHandle"])
        return out

    def shut_down(self, at: datetime | None = None) -> None:
        """Set up (not enforced): the global scope shut down by spend, targets at 0."""
        self.become("usage")  # its environment; the setup itself is not enforced
        when = at or datetime.now(UTC)
        runtime = build(now=lambda: when)
        runtime.engine.ingest(
            [record(f"setup-{i}", input_tokens=100_000, output_tokens=10_000, at=when) for i in range(60)]
        )
        assert self.flag().level == Level.SHUTDOWN and self.concurrency("chat-api") == 0 and self.denied()
        self.sns_messages()
        self.slack.clear()


@pytest.fixture
def deployment(ddb: Any, synth: Synth, monkeypatch: pytest.MonkeyPatch) -> Iterator[Deployment]:
    yield Deployment(synth, monkeypatch)
    default_runtime.cache_clear()
    default_slack_reset.cache_clear()


def alarm_event(name: str, state: str) -> dict[str, Any]:
    event: dict[str, Any] = load_event("eventbridge-alarm-state-change-single-metric.json")
    event["detail"]["alarmName"] = name
    event["detail"]["state"]["value"] = state
    return event


def assert_notified(d: Deployment, count: int) -> None:
    assert len(d.sns_messages()) == count  # SNS publish (with the topic key) went through
    assert len(d.slack) == count  # the webhook secret was readable


# -- scenarios: each runs one handler as its function and asserts its effects ----------------------


def usage_escalates_through_shutdown(d: Deployment) -> None:
    d.become("usage")
    result = d.run(handlers.usage.handler, batch("a", 60))  # $29.70 in one batch
    assert "global: normal -> shutdown" in result["transitions"]
    assert d.concurrency("chat-api") == 0 and d.concurrency("worker") == 0 and d.denied()
    assert d.flag().applied and d.flag().targets["chat-api"].saved == 7
    assert_notified(d, 2)  # global and app:chat-api


def usage_client_event_is_counted(d: Deployment) -> None:
    from guardrail.core.usage_event import UsageEventDetail

    d.become("usage")
    detail = UsageEventDetail.from_record(
        record("client-1", model=SONNET_45_US, input_tokens=150_000, output_tokens=300_000, at=datetime.now(UTC))
    )
    event = {"source": "guardrail.client", "detail-type": "Bedrock Usage", "detail": detail.model_dump(mode="json")}
    result = d.run(handlers.usage.handler, event)
    assert result["recorded"] == 1 and result["transitions"] == ["global: normal -> alert"]
    assert_notified(d, 1)


def alarm_then_ok(d: Deployment) -> None:
    # The synthesized stack maps bedrock-errors to throttle and runaway-agent to shutdown.
    d.become("alarm")
    assert d.run(handlers.alarm.handler, alarm_event("bedrock-errors", "ALARM"))["changed"]
    assert d.flag().level == Level.THROTTLE
    assert d.run(handlers.alarm.handler, alarm_event("bedrock-errors", "OK"))["changed"]
    assert d.flag().level == Level.NORMAL
    assert d.run(handlers.alarm.handler, alarm_event("runaway-agent", "ALARM"))["changed"]
    assert d.flag().level == Level.SHUTDOWN and d.flag().applied
    assert d.concurrency("chat-api") == 0 and d.concurrency("worker") == 0 and d.denied()
    assert not d.run(handlers.alarm.handler, alarm_event("runaway-agent", "OK"))["changed"]  # waits for reset
    assert_notified(d, 3)


def reset_restores(d: Deployment) -> None:
    d.shut_down()
    d.become("reset")
    result = d.run(handlers.reset.handler, {"scope": "global", "reason": "loop fixed", "actor": "alice"})
    assert result["ok"] and result["to_level"] == "normal", result
    assert d.concurrency("chat-api") == 7 and d.concurrency("worker") is None and not d.denied()
    assert_notified(d, 1)


def schedule_repairs_drift_and_reconciles(d: Deployment) -> None:
    d.shut_down()
    boto3.client("cloudwatch", region_name=REGION).put_metric_data(
        Namespace="AWS/Bedrock",
        MetricData=[
            {
                "MetricName": "InputTokenCount",
                "Dimensions": [{"Name": "ModelId", "Value": SONNET_45_US}],
                "Timestamp": datetime.now(UTC),
                "Value": 6_000_000,
            }
        ],
    )
    d.lam.put_function_concurrency(FunctionName="chat-api", ReservedConcurrentExecutions=50)  # someone "fixed" it
    d.iam.delete_role_policy(RoleName="batch-jobs", PolicyName=POLICY_NAME)  # and the role's deny
    d.become("schedule")
    result = d.run(handlers.schedule.handler, SCHEDULED)
    assert result["failures"] == [] and "error" not in result["reconciliation"], result
    assert any("chat-api" in r for r in result["repaired"]) and d.concurrency("chat-api") == 0
    assert any("Bedrock deny re-applied" in r for r in result["repaired"]) and d.denied()
    assert result["reconciliation"]["bedrock_metrics_usd"] != "0"  # ListMetrics found the model, data was read
    assert_notified(d, 1)  # the repair is announced


def schedule_applies_a_ledger_batch_its_writer_left_open(d: Deployment) -> None:
    # Set up (not enforced): a usage invocation that died between claiming 150 requests and applying them.
    d.become("usage")
    at = datetime.now(UTC) - timedelta(minutes=11)
    runtime = build(now=lambda: at)
    records = [record(f"open-{i}", at=at - timedelta(minutes=i)) for i in range(150)]
    with dies(runtime.client("dynamodb"), 3, after=False):  # 2 claim transactions, then the first part
        runtime.engine.ingest(records)
    assert FlagStore(boto3.client("dynamodb", region_name=REGION), TABLE).get("global").level == Level.NORMAL
    d.become("schedule")
    result = d.run(handlers.schedule.handler, SCHEDULED)
    assert result["failures"] == [] and any("applied batch" in r for r in result["repaired"]), result
    assert d.spend("global") == (150, 150 * record("x").input_tokens)


def schedule_auto_clear_restores(d: Deployment) -> None:
    budgets = json.dumps(
        [
            {
                "scope": "global",
                "thresholds": "alert=5,throttle=10,shutdown=25",
                "targets": ["chat-api", "worker", ROLE_TARGET],
                "shutdown_auto_clears": True,
            }
        ]
    )
    d.monkeypatch.setenv("GUARDRAIL_BUDGETS", budgets)
    original = d.become

    def become(role: str, *, statements: list[dict[str, Any]] | None = None, **env: str) -> None:
        original(role, statements=statements, GUARDRAIL_BUDGETS=budgets, **env)

    d.become = become  # type: ignore[method-assign]
    d.shut_down(at=datetime.now(UTC) - timedelta(days=1))
    d.become("schedule")
    result = d.run(handlers.schedule.handler, SCHEDULED)
    assert "global: shutdown -> normal (rollover)" in result["transitions"], result
    assert result["failures"] == [], result
    assert d.concurrency("chat-api") == 7 and d.concurrency("worker") is None and not d.denied()
    assert d.flag().targets == {}
    assert_notified(d, 1)  # the rollover restore is announced


def slack_resets(d: Deployment) -> None:
    from guardrail.service.notify import reset_buttons

    d.shut_down()
    d.become("slack")
    api, now = FakeSlack(), datetime.now(UTC)
    default_slack_reset.install(SlackReset(runtime=default_runtime(), now=lambda: now, slack=api))
    block = reset_buttons("global")
    assert block is not None
    clicked = d.run(handlers.slack.handler, url_request(click(block["elements"][0]), at=now))
    assert clicked["statusCode"] == 200 and len(api.views) == 1, (clicked, api.ephemeral)
    submitted = d.run(handlers.slack.handler, url_request(submit(api.views[0], "loop fixed"), at=now))
    assert submitted == {"statusCode": 200, "body": ""}, submitted
    assert d.concurrency("chat-api") == 7 and d.concurrency("worker") is None and not d.denied()
    (answer,) = api.messages
    assert d.flag().level == Level.NORMAL and "FAILED" not in answer["text"], answer["text"]
    assert_notified(d, 1)


def cli_under_the_on_call_policy(d: Deployment) -> None:
    from tests.support.cli import run_cli

    d.shut_down()
    d.become(ONCALL)
    with enforced_iam(lambda action, arn, ok: d.used.append((action, arn)) if ok else None):
        status = run_cli("status", "--json")
        history = run_cli("history", "--json")
        reset = run_cli("reset", "--scope", "global", "--reason", "loop fixed", "--yes", "--json")
    assert status[0] == 0, status
    (scope,) = [e for e in json.loads(status[1])["scopes"] if e["scope"] == "global"]
    assert scope["level"] == "shutdown" and [t["current"] for t in scope["targets"]] == [0, 0, "denied"]  # readable
    assert history[0] == 0 and json.loads(history[1]), history
    assert reset[0] == 0 and json.loads(reset[1])["ok"], reset
    assert d.concurrency("chat-api") == 7 and d.concurrency("worker") is None and not d.denied()
    assert_notified(d, 1)


SCENARIOS: dict[str, tuple[str, Scenario]] = {
    "usage: log batch through shutdown": ("usage", usage_escalates_through_shutdown),
    "usage: client event": ("usage", usage_client_event_is_counted),
    "alarm: ALARM then OK": ("alarm", alarm_then_ok),
    "reset: restores every target": ("reset", reset_restores),
    "schedule: drift repair and reconciliation": ("schedule", schedule_repairs_drift_and_reconciles),
    "schedule: auto-clear restore": ("schedule", schedule_auto_clear_restores),
    "schedule: applies a ledger batch left open": ("schedule", schedule_applies_a_ledger_batch_its_writer_left_open),
    "slack: reset from Slack": ("slack", slack_resets),
    "cli: status, history, reset": (ONCALL, cli_under_the_on_call_policy),
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_scenario_passes_under_the_functions_synthesized_policy(deployment: Deployment, name: str) -> None:
    _, scenario = SCENARIOS[name]
    scenario(deployment)
    assert deployment.used, "IAM was enforced on the scenario's calls"


# -- a missing permission fails a scenario ----------------------------------------------------------

# The permissions this suite found missing (or that guard a restore path), each taken out of the role.
REGRESSIONS = [
    ("schedule: drift repair and reconciliation", "cloudwatch:ListMetrics"),
    ("schedule: auto-clear restore", "lambda:DeleteFunctionConcurrency"),
    ("usage: log batch through shutdown", "lambda:PutFunctionConcurrency"),
    ("alarm: ALARM then OK", "kms:GenerateDataKey"),
    ("reset: restores every target", "lambda:DeleteFunctionConcurrency"),
    ("cli: status, history, reset", "dynamodb:Scan"),
    # Role targets: the deny is put at shutdown, read by the drift check, deleted at reset.
    ("usage: log batch through shutdown", "iam:PutRolePolicy"),
    ("schedule: drift repair and reconciliation", "iam:GetRolePolicy"),
    ("reset: restores every target", "iam:DeleteRolePolicy"),
    ("cli: status, history, reset", "iam:DeleteRolePolicy"),
    ("slack: reset from Slack", "lambda:PutFunctionConcurrency"),
    ("slack: reset from Slack", "iam:DeleteRolePolicy"),
    # A ledger batch leaves the open-batch index when its last part is applied.
    ("schedule: applies a ledger batch left open", "dynamodb:DeleteItem"),
]


@pytest.mark.parametrize(("name", "action"), REGRESSIONS)
def test_removing_a_permission_the_scenario_needs_fails_it(deployment: Deployment, name: str, action: str) -> None:
    role, scenario = SCENARIOS[name]
    deployment.without[role] = action
    with pytest.raises(Exception) as failed:  # an assertion, or the handler failing
        scenario(deployment)
    print(f"\n{name} without {action}: {failed.typename}: {str(failed.value).splitlines()[0][:200]}")


@pytest.mark.skipif(not os.environ.get("IAM_SWEEP"), reason="slow: set IAM_SWEEP=1 (~1 s a run)")
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_each_permission_a_scenario_uses_is_needed(
    ddb: Any, synth: Synth, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    role, scenario = SCENARIOS[name]
    first = Deployment(synth, monkeypatch)
    scenario(first)
    actions = sorted({a for a, _ in first.used} - ALWAYS_ALLOWED)
    print(f"\n{name}: {len(actions)} actions used: {', '.join(actions)}")
    survivors = []
    for action in actions:
        with monkeypatch.context() as m:
            fresh_world()
            d = Deployment(synth, m)
            d.without[role] = action
            try:
                scenario(d)
            except Exception as exc:  # an assertion, or the handler failing (an async retry in AWS)
                print(f"  without {action}: fails ({type(exc).__name__}: {str(exc).splitlines()[0][:150]})")
                continue
            finally:
                default_runtime.cache_clear()
            survivors.append(action)
    assert survivors == [], f"{name} still passes without {survivors}"


ALWAYS_ALLOWED = {"sts:GetCallerIdentity"}  # AWS answers it for any identity


def fresh_world() -> None:
    from moto.moto_api._internal.models import moto_api_backend

    from guardrail.store.table import create_table

    moto_api_backend.reset()
    create_table(boto3.client("dynamodb", region_name=REGION), TABLE)
