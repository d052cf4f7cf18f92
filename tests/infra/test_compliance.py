"""cdk-nag AwsSolutions (acknowledged per resource, with reasons) and cfn-lint on the synthesized template."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.synth import GUARDRAIL, Synth, synthesize

ACK = "aws:cdk:acknowledged-rules"


def acknowledgments(synth: Synth) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for path, entries in synth.metadata.items():
        for entry in entries:
            if entry["type"] == ACK:
                out.setdefault(path, {}).update(entry["data"])
    return out


def test_cdk_nag_aws_solutions_reports_no_unacknowledged_finding(synth: Synth) -> None:
    # app.synth() raises on a finding; the report confirms the plugin ran clean.
    assert synth.validation_report["pluginReports"] == []
    assert acknowledgments(synth), "cdk-nag acknowledgments are recorded, so the plugin did run"


def test_acknowledgments_are_per_resource_specific_and_explained(synth: Synth) -> None:
    stack_path = f"/{synth.stack.stack_name}"
    for path, rules in acknowledgments(synth).items():
        assert path not in ("/", stack_path), f"stack-wide acknowledgment at {path}"
        assert path.count("/") >= 3, f"acknowledgment too high in the tree: {path}"
        for rule, reason in rules.items():
            rule_id = rule.removeprefix("Annotation::")
            assert rule_id.startswith("AwsSolutions-")
            if rule_id.startswith("AwsSolutions-IAM5"):
                assert "[" in rule_id, f"IAM5 must name the finding: {rule_id} at {path}"
            assert len(reason) >= 60, f"reason too thin for {rule_id} at {path}: {reason!r}"


def test_cfn_lint_finds_no_errors(synth: Synth) -> None:
    from cfnlint.api import lint  # type: ignore[import-untyped, unused-ignore]

    matches = lint(json.dumps(synth.template), regions=["us-east-1", "eu-west-1"])
    errors = [f"{m.rule.id} {m.message} ({'/'.join(map(str, m.path))})" for m in matches if m.rule.id.startswith("E")]
    assert errors == []


def test_synth_time_is_reported_and_reasonable(synth: Synth) -> None:
    print(f"\ncdk synth (offline, dependency bundling off, cdk-nag on): {synth.seconds:.1f}s")
    assert synth.seconds < 60


def test_existing_log_group_variant_subscribes_without_touching_logging_config(tmp_path: Path) -> None:
    # Given an existing invocation log group and no Slack, no alarm mapping, no targets
    guardrail = {
        **{k: v for k, v in GUARDRAIL.items() if k not in ("slackChannel", "slackWebhookSecret", "budgets")},
        "alarmLevels": {},
        "targetFunctions": [],
        "invocationLogs": {"mode": "existing", "logGroupName": "/aws/bedrock/invocations"},
    }
    # When synthesized (cdk-nag included)
    result = synthesize(guardrail, tmp_path)
    # Then the filter is on that group, and nothing turns invocation logging on or stops functions
    (sub,) = result.of_type("AWS::Logs::SubscriptionFilter").values()
    assert sub["Properties"]["LogGroupName"] == "/aws/bedrock/invocations"
    assert not result.of_type("Custom::BedrockInvocationLogging")
    assert not result.of_type("AWS::Chatbot::SlackChannelConfiguration")
    text = json.dumps(result.template)
    assert "FunctionConcurrency" not in text and "bedrock:PutModelInvocationLoggingConfiguration" not in text
    rules = result.of_type("AWS::Events::Rule").values()
    assert sorted("ScheduleExpression" in r["Properties"] for r in rules) == [False, True]  # usage + schedule
    assert result.validation_report["pluginReports"] == []
