"""Who may report usage and who may reset, as the synthesized template says (issue 13, items 3 and 5)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from guardrail_cdk.props import USAGE_EVENT_DETAIL_TYPES  # type: ignore[import-not-found, unused-ignore]

from tests.support.synth import ACCOUNT, GUARDRAIL, PREFIX, REGION, Synth, resolve, synthesize

REPORTER = f"arn:aws:iam::{ACCOUNT}:role/chat-api-role"
BATCH = f"arn:aws:iam::{ACCOUNT}:role/batch-role"
ONCALL = f"arn:aws:iam::{ACCOUNT}:role/oncall"
BUS_ARN = f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/{PREFIX}-usage"


@pytest.fixture(scope="module")
def named(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    guardrail = {**GUARDRAIL, "usageReporters": [REPORTER, BATCH], "resetters": [ONCALL]}
    guardrail["slackApp"] = {**GUARDRAIL["slackApp"], "secret": "guardrail/slack-app"}  # by name: the ARN suffix
    return synthesize(guardrail, tmp_path_factory.mktemp("cdk.out.named"))


def bus(synth: Synth) -> tuple[str, dict[str, Any]]:
    ((logical_id, resource),) = synth.of_type("AWS::Events::EventBus").items()
    return logical_id, resource["Properties"]


def usage_rule(synth: Synth) -> dict[str, Any]:
    (rule,) = [
        r["Properties"]
        for r in synth.of_type("AWS::Events::Rule").values()
        if r["Properties"].get("EventPattern", {}).get("detail-type") == list(USAGE_EVENT_DETAIL_TYPES)
    ]
    return rule


def test_usage_events_are_heard_only_on_the_guardrails_own_bus(synth: Synth) -> None:
    logical_id, props = bus(synth)
    assert props["Name"] == f"{PREFIX}-usage"
    assert usage_rule(synth)["EventBusName"] == {"Ref": logical_id}
    outputs = synth.template["Outputs"]
    assert any(o["Value"] == {"Ref": logical_id} for o in outputs.values())


def test_without_named_reporters_only_the_account_may_put(synth: Synth) -> None:
    _, props = bus(synth)
    (statement,) = props["Policy"]["Statement"]
    assert statement["Effect"] == "Allow" and statement["Action"] == "events:PutEvents"
    assert resolve(statement["Principal"]["AWS"]) == [f"arn:aws:iam::{ACCOUNT}:root"]
    assert resolve(statement["Resource"]) == BUS_ARN


def test_named_reporters_may_put_and_every_other_principal_is_denied(named: Synth) -> None:
    _, props = bus(named)
    allow, deny = props["Policy"]["Statement"]
    assert (allow["Effect"], allow["Principal"], allow["Action"]) == (
        "Allow",
        {"AWS": [REPORTER, BATCH]},
        "events:PutEvents",
    )
    assert (deny["Effect"], deny["Principal"], deny["Action"]) == ("Deny", "*", "events:PutEvents")
    assert deny["Condition"] == {"ArnNotLike": {"aws:PrincipalArn": [REPORTER, BATCH]}}
    assert resolve(allow["Resource"]) == resolve(deny["Resource"]) == BUS_ARN


def test_reset_is_served_by_an_iam_authenticated_function_url(synth: Synth, named: Synth) -> None:
    for s in (synth, named):
        ((_, url),) = [
            (k, u) for k, u in s.of_type("AWS::Lambda::Url").items() if u["Properties"]["AuthType"] != "NONE"
        ]
        assert url["Properties"]["AuthType"] == "AWS_IAM"
        target = url["Properties"]["TargetFunctionArn"]["Fn::GetAtt"][0]
        assert s.resources[target]["Properties"]["FunctionName"] == f"{PREFIX}-reset"
    grants = [
        p["Properties"]
        for p in named.of_type("AWS::Lambda::Permission").values()
        if p["Properties"]["Action"] == "lambda:InvokeFunctionUrl"
        and p["Properties"]["FunctionUrlAuthType"] == "AWS_IAM"
    ]
    assert [(g["Principal"], g["FunctionUrlAuthType"]) for g in grants] == [(ONCALL, "AWS_IAM")]


def test_named_variant_stays_clean_under_cdk_nag_and_cfn_lint(named: Synth, tmp_path: Path) -> None:
    from cfnlint.api import lint  # type: ignore[import-untyped, unused-ignore]

    assert named.validation_report["pluginReports"] == []  # synthesize raises on any unacknowledged finding
    matches = lint(json.dumps(named.template), regions=["us-east-1"])
    assert [m for m in matches if m.rule.id.startswith("E")] == []
