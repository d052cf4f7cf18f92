"""Synthesizing the CDK app offline (dependency bundling off) and reading the template."""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CDK_DIR = Path(__file__).resolve().parents[2] / "cdk"
if str(CDK_DIR) not in sys.path:
    sys.path.insert(0, str(CDK_DIR))
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

ACCOUNT, REGION, PARTITION = "123456789012", "us-east-1", "aws"
PREFIX = "bg-test"
SLACK_SECRET_ARN = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:guardrail/slack-AbCdEf"
SLACK_APP_SECRET_ARN = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:guardrail/slack-app-GhIjKl"
TARGETS = ("chat-api", f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:worker", "acme-batch")
TARGET_ARNS = {
    f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:chat-api",
    f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:worker",
    f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:acme-batch",
}
# A Bedrock caller that is not a Lambda function (an ECS task role, say), with a path.
ROLE_TARGET = f"arn:aws:iam::{ACCOUNT}:role/teams/batch-jobs"
GUARDRAIL = {
    "namePrefix": PREFIX,
    "mode": "enforce",
    "thresholds": "alert=5,throttle=10,shutdown=25",
    "targetFunctions": list(TARGETS[:2]),
    "targetRoles": [ROLE_TARGET],
    "alarmLevels": {"bedrock-errors": "throttle", "runaway-agent": "shutdown"},
    "budgets": [
        {
            "scope": "global",
            "thresholds": {"alert": 5, "throttle": 10, "shutdown": 25},
            "targets": [*TARGETS[:2], ROLE_TARGET],
        },
        {
            "scope": "tenant:acme",
            "window": "month",
            "thresholds": "alert=50,throttle=80,shutdown=100.5",
            "targets": ["acme-batch", ROLE_TARGET],
        },
        {"scope": "app:*", "thresholds": "alert=1,throttle=2,shutdown=5"},
    ],
    "slackWebhookSecret": SLACK_SECRET_ARN,
    "slackChannel": {"workspaceId": "T0123ABCD", "channelId": "C0123ABCD"},
    "slackApp": {"secret": SLACK_APP_SECRET_ARN, "oncallUsers": ["U0ONCALL", "T0123ABCD/U0BOB"]},
    "invocationLogs": {"mode": "create", "retentionDays": 14},
    "bundleDependencies": False,
}


@dataclass
class Synth:
    template: dict[str, Any]
    metadata: dict[str, list[dict[str, Any]]]
    validation_report: dict[str, Any]
    seconds: float
    stack: Any

    @property
    def resources(self) -> dict[str, dict[str, Any]]:
        resources: dict[str, dict[str, Any]] = self.template["Resources"]
        return resources

    def of_type(self, kind: str) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.resources.items() if v["Type"] == kind}


def synthesize(guardrail: dict[str, Any], outdir: Path) -> Synth:
    from guardrail_cdk.application import create_app  # type: ignore[import-not-found, unused-ignore]

    start = time.perf_counter()
    app, stack = create_app(context={"guardrail": guardrail}, outdir=str(outdir))
    assembly = app.synth()  # raises on any unacknowledged cdk-nag finding
    seconds = time.perf_counter() - start
    artifact = assembly.get_stack_by_name(stack.stack_name)
    report = json.loads((outdir / "validation-report.json").read_text())
    metadata = json.loads((outdir / f"{stack.artifact_id}.metadata.json").read_text())
    return Synth(artifact.template, metadata, report, seconds, stack)


def resolve(value: Any) -> Any:
    """Resolve the CloudFormation intrinsics that ARNs are built from, with fixed pseudo parameters."""
    pseudo = {
        "AWS::Partition": PARTITION,
        "AWS::Region": REGION,
        "AWS::AccountId": ACCOUNT,
        "AWS::URLSuffix": "amazonaws.com",
    }
    if isinstance(value, dict) and len(value) == 1:
        ((key, arg),) = value.items()
        if key == "Ref" and arg in pseudo:
            return pseudo[arg]
        if key == "Fn::Join":
            return arg[0].join(str(resolve(v)) for v in arg[1])
    if isinstance(value, list):
        return [resolve(v) for v in value]
    return value


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


CONCURRENCY = {"lambda:GetFunctionConcurrency", "lambda:PutFunctionConcurrency", "lambda:DeleteFunctionConcurrency"}
ROLE_POLICY = {"iam:GetRolePolicy", "iam:PutRolePolicy", "iam:DeleteRolePolicy"}
# The only actions allowed on Resource "*" (each has no resource-level permissions; each is acknowledged).
STAR_ALLOWED = {
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
    "cloudwatch:GetMetricData",
    "cloudwatch:ListMetrics",
    "bedrock:GetModelInvocationLoggingConfiguration",
    "bedrock:PutModelInvocationLoggingConfiguration",
    "bedrock:DeleteModelInvocationLoggingConfiguration",
}


def statements_by_function(synth: Synth) -> dict[str, list[dict[str, Any]]]:
    """Function name -> every Allow/Deny statement attached to its role (all inline policies)."""
    role_of = {
        props["Properties"]["FunctionName"]: props["Properties"]["Role"]["Fn::GetAtt"][0]
        for props in synth.of_type("AWS::Lambda::Function").values()
    }
    by_role: dict[str, list[dict[str, Any]]] = {}
    for policy in synth.of_type("AWS::IAM::Policy").values():
        for role in policy["Properties"]["Roles"]:
            by_role.setdefault(role["Ref"], []).extend(policy["Properties"]["PolicyDocument"]["Statement"])
    return {fn: by_role.get(role, []) for fn, role in role_of.items()}


def actions(statement: dict[str, Any]) -> set[str]:
    return set(as_list(statement["Action"]))
