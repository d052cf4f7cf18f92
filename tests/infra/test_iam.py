"""IAM: one role per function, inline policies only, concurrency APIs only on the target ARNs."""

from __future__ import annotations

from tests.support.synth import (
    CONCURRENCY,
    PREFIX,
    STAR_ALLOWED,
    TARGET_ARNS,
    Synth,
    actions,
    as_list,
    resolve,
    statements_by_function,
)


def test_given_targets_when_synthesized_then_concurrency_statements_name_exactly_the_target_arns(synth: Synth) -> None:
    found = 0
    for fn, statements in statements_by_function(synth).items():
        for st in statements:
            if actions(st) & CONCURRENCY:
                found += 1
                assert st["Effect"] == "Allow"
                assert set(resolve(as_list(st["Resource"]))) == TARGET_ARNS, fn
                assert "Condition" not in st
    assert found == 4  # usage, alarm, schedule (shutdown) and reset (restore)


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


def test_no_allow_statement_uses_star_except_for_apis_without_resource_level_permissions(synth: Synth) -> None:
    for fn, statements in statements_by_function(synth).items():
        for st in statements:
            if st["Effect"] == "Allow" and "*" in as_list(st["Resource"]):
                assert actions(st) <= STAR_ALLOWED, (fn, st)
            assert not any(a.endswith(":*") or a == "*" for a in actions(st)), (fn, st)


def test_each_function_has_its_own_role_with_no_managed_policies(synth: Synth) -> None:
    roles = [f["Properties"]["Role"]["Fn::GetAtt"][0] for f in synth.of_type("AWS::Lambda::Function").values()]
    assert len(roles) == len(set(roles)) == 5
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
