"""IAM: one role per function, inline policies only, concurrency APIs only on the target ARNs."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from tests.support.synth import (
    CONCURRENCY,
    PREFIX,
    ROLE_POLICY,
    ROLE_TARGET,
    SLACK_SECRET_ARN,
    STAR_ALLOWED,
    TARGET_ARNS,
    Synth,
    actions,
    as_list,
    resolve,
    statements_by_function,
)

README = Path(__file__).resolve().parents[2] / "README.md"
TABLE_ACTIONS = {
    "dynamodb:GetItem",
    "dynamodb:BatchGetItem",
    "dynamodb:Query",
    "dynamodb:Scan",
    "dynamodb:DescribeTable",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:ConditionCheckItem",
    "dynamodb:DeleteItem",
}


def test_given_targets_when_synthesized_then_concurrency_statements_name_exactly_the_target_arns(synth: Synth) -> None:
    found = 0
    for fn, statements in statements_by_function(synth).items():
        for st in statements:
            if actions(st) & CONCURRENCY:
                found += 1
                assert st["Effect"] == "Allow"
                assert set(resolve(as_list(st["Resource"]))) == TARGET_ARNS, fn
                assert "Condition" not in st
    assert found == 5  # usage, alarm, schedule (shutdown), reset and slack (restore)


def test_every_function_that_evaluates_flags_may_stop_and_restore_targets(synth: Synth) -> None:
    # A restore runs wherever a flag leaves shutdown: reset, an auto-clearing rollover (usage, alarm or
    # schedule), an alarm back to OK, the schedule's retry; a target with no reservation needs the delete.
    grants = {
        fn: set().union(*(actions(st) & CONCURRENCY for st in statements)) if statements else set()
        for fn, statements in statements_by_function(synth).items()
    }
    for role in ("usage", "alarm", "reset", "schedule"):
        assert grants[f"{PREFIX}-{role}"] == CONCURRENCY, role
    assert grants[f"{PREFIX}-invocation-logging"] == set()


def test_role_policy_actions_name_exactly_the_target_roles_and_only_the_enforcing_functions_have_them(
    synth: Synth,
) -> None:
    grants: dict[str, set[str]] = {}
    for fn, statements in statements_by_function(synth).items():
        for st in statements:
            iam_actions = actions(st) & ROLE_POLICY
            if iam_actions:
                assert actions(st) == ROLE_POLICY and st["Effect"] == "Allow" and "Condition" not in st, (fn, st)
                assert resolve(as_list(st["Resource"])) == [ROLE_TARGET], fn  # the exact ARN, path included
                grants[fn] = iam_actions
    # The Slack reset runs the same restore as the reset function.
    assert sorted(grants) == sorted(f"{PREFIX}-{r}" for r in ("alarm", "reset", "schedule", "slack", "usage"))


def test_no_allow_statement_uses_star_except_for_apis_without_resource_level_permissions(synth: Synth) -> None:
    for fn, statements in statements_by_function(synth).items():
        for st in statements:
            if st["Effect"] == "Allow" and "*" in as_list(st["Resource"]):
                assert actions(st) <= STAR_ALLOWED, (fn, st)
            assert not any(a.endswith(":*") or a == "*" for a in actions(st)), (fn, st)


def test_each_function_has_its_own_role_with_no_managed_policies(synth: Synth) -> None:
    roles = [f["Properties"]["Role"]["Fn::GetAtt"][0] for f in synth.of_type("AWS::Lambda::Function").values()]
    assert len(roles) == len(set(roles)) == 6
    for logical_id, role in synth.of_type("AWS::IAM::Role").items():
        assert not role["Properties"].get("ManagedPolicyArns"), logical_id


def test_usage_function_resolves_only_this_accounts_application_inference_profiles(synth: Synth) -> None:
    statements = statements_by_function(synth)[f"{PREFIX}-usage"]
    (st,) = [s for s in statements if "bedrock:GetInferenceProfile" in actions(s)]
    assert actions(st) == {"bedrock:GetInferenceProfile"}
    assert resolve(st["Resource"]) == "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/*"


def test_only_schedule_reads_metrics_and_only_provider_configures_invocation_logging(synth: Synth) -> None:
    for fn, statements in statements_by_function(synth).items():
        granted = set().union(*(actions(s) for s in statements))
        # Reconciliation lists the AWS/Bedrock models, then reads their token counts.
        for action in ("cloudwatch:ListMetrics", "cloudwatch:GetMetricData"):
            assert (action in granted) == (fn == f"{PREFIX}-schedule"), (fn, action)
        assert ("bedrock:PutModelInvocationLoggingConfiguration" in granted) == (
            fn == f"{PREFIX}-invocation-logging"
        ), fn


def test_table_access_is_scoped_to_the_ledger_table(synth: Synth) -> None:
    (table_id,) = synth.of_type("AWS::DynamoDB::Table")
    for fn, statements in statements_by_function(synth).items():
        for st in statements:
            if any(a.startswith("dynamodb:") for a in actions(st)):
                assert as_list(st["Resource"]) == [{"Fn::GetAtt": [table_id, "Arn"]}], fn


def test_functions_publish_to_the_topic_and_use_only_its_key(synth: Synth) -> None:
    (topic_id,) = synth.of_type("AWS::SNS::Topic")
    (key_id,) = synth.of_type("AWS::KMS::Key")
    for role in ("usage", "alarm", "reset", "schedule"):
        statements = statements_by_function(synth)[f"{PREFIX}-{role}"]
        publish = [s for s in statements if "sns:Publish" in actions(s)]
        assert [s["Resource"] for s in publish] == [{"Ref": topic_id}]
        kms = [s for s in statements if any(a.startswith("kms:") for a in actions(s))]
        assert [(actions(s), s["Resource"]) for s in kms] == [
            ({"kms:GenerateDataKey", "kms:Decrypt"}, {"Fn::GetAtt": [key_id, "Arn"]})
        ]


# -- the on-call policy ----------------------------------------------------------------------------


def oncall_policy(synth: Synth) -> tuple[str, dict[str, Any]]:
    ((logical_id, policy),) = [
        (k, v)
        for k, v in synth.of_type("AWS::IAM::ManagedPolicy").items()
        if "on-call" in v["Properties"].get("Description", "")
    ]
    return logical_id, policy["Properties"]


def test_on_call_policy_grants_exactly_what_status_history_and_reset_need(synth: Synth) -> None:
    logical_id, props = oncall_policy(synth)
    (table_id,) = synth.of_type("AWS::DynamoDB::Table")
    (topic_id,) = synth.of_type("AWS::SNS::Topic")
    (key_id,) = synth.of_type("AWS::KMS::Key")
    granted = {
        frozenset(actions(st)): {json.dumps(r) for r in as_list(resolve(st["Resource"]))}
        for st in props["PolicyDocument"]["Statement"]
        if st["Effect"] == "Allow"
    }

    def refs(*resources: Any) -> set[str]:
        return {json.dumps(r) for r in resources}

    assert granted == {
        frozenset(TABLE_ACTIONS): refs({"Fn::GetAtt": [table_id, "Arn"]}),
        frozenset({"sns:Publish"}): refs({"Ref": topic_id}),
        frozenset({"kms:GenerateDataKey", "kms:Decrypt"}): refs({"Fn::GetAtt": [key_id, "Arn"]}),
        frozenset({"secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"}): refs(SLACK_SECRET_ARN),
        frozenset(CONCURRENCY): refs(*TARGET_ARNS),
        frozenset(ROLE_POLICY): refs(ROLE_TARGET),
    }
    # Not attached by the stack (the platform team attaches it), and its ARN is an output.
    assert not any(props.get(k) for k in ("Roles", "Users", "Groups"))
    assert synth.template["Outputs"]["OnCallPolicyArn"]["Value"] == {"Ref": logical_id}


def test_readme_lists_exactly_the_on_call_policy(synth: Synth) -> None:
    text = README.read_text()
    section = text.split("<!-- on-call-policy")[1].split("<!-- /on-call-policy -->")[0]
    listed = set(re.findall(r"`([a-z0-9]+:[A-Za-z]+)`", section))
    _, props = oncall_policy(synth)
    assert listed == set().union(*(actions(st) for st in props["PolicyDocument"]["Statement"]))
