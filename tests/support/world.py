"""A small AWS world on moto for the pipeline tests: two target functions, the alert topic with an SQS
inbox, a Slack webhook secret, and the guardrail's settings in the environment."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

import handlers.usage
from guardrail.service.runtime import default_runtime
from guardrail.store.flags import FlagStore
from guardrail.tools.embedded_aws import create_function
from tests.support.common import TABLE, FakeLambdaContext
from tests.support.factories import log_line, logs_event, record

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

        monkeypatch.setattr("guardrail.service.notify.http_post", post)
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
