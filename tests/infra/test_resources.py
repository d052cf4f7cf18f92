"""Resources: table schema, functions, async failure paths, rules, encryption, alarms, dashboard."""

from __future__ import annotations

import json
from decimal import Decimal
from fnmatch import fnmatchcase
from typing import Any

from guardrail_cdk.props import (  # type: ignore[import-not-found, unused-ignore]
    METRICS_NAMESPACE,
    USAGE_EVENT_DETAIL_TYPES,
    USAGE_EVENT_SOURCE,
)

from guardrail.core import usage_event
from tests.support.common import TABLE
from tests.support.synth import ACCOUNT, PREFIX, REGION, SLACK_SECRET_ARN, Synth, as_list, resolve

ROLES = ("usage", "alarm", "reset", "schedule", "slack")


def functions(synth: Synth) -> dict[str, dict[str, Any]]:
    return {f["Properties"]["FunctionName"]: f for f in synth.of_type("AWS::Lambda::Function").values()}


def logical_id_of_function(synth: Synth, name: str) -> str:
    return next(k for k, v in synth.of_type("AWS::Lambda::Function").items() if v["Properties"]["FunctionName"] == name)


# -- ledger ----------------------------------------------------------------------------------------


def test_table_schema_equals_create_table(synth: Synth, ddb: Any) -> None:
    # Given the table that guardrail.store.table.create_table makes (moto)
    described = ddb.describe_table(TableName=TABLE)["Table"]
    ttl = ddb.describe_time_to_live(TableName=TABLE)["TimeToLiveDescription"]
    # When the stack is synthesized
    ((_, table),) = synth.of_type("AWS::DynamoDB::Table").items()
    props = table["Properties"]
    # Then keys, attribute types, billing mode and TTL attribute are the same
    assert sorted(props["KeySchema"], key=str) == sorted(described["KeySchema"], key=str)
    assert sorted(props["AttributeDefinitions"], key=str) == sorted(described["AttributeDefinitions"], key=str)
    assert props["BillingMode"] == described["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    assert props["TimeToLiveSpecification"] == {"AttributeName": ttl["AttributeName"], "Enabled": True}
    for index in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
        assert not props.get(index) and not described.get(index)
    # and it is protected
    assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    assert table["DeletionPolicy"] == table["UpdateReplacePolicy"] == "Retain"


# -- functions -------------------------------------------------------------------------------------


def test_four_functions_arm64_current_python_with_contract_handlers_and_environment(synth: Synth) -> None:
    fns = functions(synth)
    own = ",".join(f"{PREFIX}-{r}" for r in ROLES)
    (layer_id,) = synth.of_type("AWS::Lambda::LayerVersion")
    for role in ROLES:
        props = fns[f"{PREFIX}-{role}"]["Properties"]
        assert props["Architectures"] == ["arm64"]
        assert props["Runtime"] == "python3.14"
        assert props["Handler"] == f"handlers.{role}.handler"
        assert props["Layers"] == [{"Ref": layer_id}]
        assert props["TracingConfig"] == {"Mode": "Active"}
        env = props["Environment"]["Variables"]
        assert env["GUARDRAIL_OWN_FUNCTIONS"] == own
        assert env["GUARDRAIL_TARGET_FUNCTIONS"] == "chat-api,arn:aws:lambda:us-east-1:123456789012:function:worker"
        assert env["GUARDRAIL_THRESHOLDS"] == "alert=5,throttle=10,shutdown=25"
        assert env["GUARDRAIL_MODE"] == "enforce"
        assert env["GUARDRAIL_WINDOW"] == "day" and env["GUARDRAIL_TIMEZONE"] == "UTC"
        assert json.loads(env["GUARDRAIL_ALARM_LEVELS"]) == {"bedrock-errors": "throttle", "runaway-agent": "shutdown"}
        assert [b["scope"] for b in json.loads(env["GUARDRAIL_BUDGETS"])] == ["global", "tenant:acme", "app:*"]
        assert env["GUARDRAIL_SLACK_SECRET_ARN"] == SLACK_SECRET_ARN
        assert env["POWERTOOLS_METRICS_NAMESPACE"] == METRICS_NAMESPACE == "BedrockGuardrail"
        assert env["POWERTOOLS_SERVICE_NAME"] == PREFIX
        assert set(env["GUARDRAIL_TABLE_NAME"]) == {"Ref"} and set(env["GUARDRAIL_TOPIC_ARN"]) == {"Ref"}


def test_synthesized_environment_loads_in_the_guardrail_settings_model(synth: Synth, monkeypatch: Any) -> None:
    from guardrail.core.config import load_settings

    env = functions(synth)[f"{PREFIX}-usage"]["Properties"]["Environment"]["Variables"]
    for key, value in env.items():
        monkeypatch.setenv(key, value if isinstance(value, str) else "deploy-time-value")
    settings = load_settings()
    assert settings.own_functions == tuple(f"{PREFIX}-{r}" for r in ROLES)
    assert [b.selector for b in settings.budget_list()] == ["global", "tenant:acme", "app:*"]
    assert settings.budget_list()[1].thresholds.shutdown == Decimal("100.5")


# -- asynchronous paths ----------------------------------------------------------------------------


def test_every_function_has_an_on_failure_destination_queue(synth: Synth) -> None:
    queues = synth.of_type("AWS::SQS::Queue")
    configs = {
        c["Properties"]["FunctionName"]["Ref"]: c["Properties"]
        for c in synth.of_type("AWS::Lambda::EventInvokeConfig").values()
    }
    assert set(configs) == set(synth.of_type("AWS::Lambda::Function"))
    for fn_id, config in configs.items():
        destination = config["DestinationConfig"]["OnFailure"]["Destination"]
        assert destination["Fn::GetAtt"][0] in queues and destination["Fn::GetAtt"][1] == "Arn", fn_id
        assert config["MaximumRetryAttempts"] == 2


def test_every_eventbridge_target_has_a_dead_letter_queue_and_retry_policy(synth: Synth) -> None:
    queues = synth.of_type("AWS::SQS::Queue")
    rules = synth.of_type("AWS::Events::Rule")
    assert len(rules) == 3  # usage events, mapped alarms, schedule
    for rule_id, rule in rules.items():
        for target in rule["Properties"]["Targets"]:
            assert target["DeadLetterConfig"]["Arn"]["Fn::GetAtt"][0] in queues, rule_id
            assert target["RetryPolicy"]["MaximumRetryAttempts"] > 0


def test_log_subscription_feeds_the_usage_function_which_has_a_failure_destination(synth: Synth) -> None:
    ((_, sub),) = synth.of_type("AWS::Logs::SubscriptionFilter").items()
    usage_id = logical_id_of_function(synth, f"{PREFIX}-usage")
    assert sub["Properties"]["DestinationArn"] == {"Fn::GetAtt": [usage_id, "Arn"]}
    assert sub["Properties"]["FilterPattern"] == ""
    assert any(
        c["Properties"]["FunctionName"] == {"Ref": usage_id} and c["Properties"]["DestinationConfig"]["OnFailure"]
        for c in synth.of_type("AWS::Lambda::EventInvokeConfig").values()
    )


def test_failure_queues_are_encrypted_and_refuse_plain_http(synth: Synth) -> None:
    for queue_id, queue in synth.of_type("AWS::SQS::Queue").items():
        assert queue["Properties"]["SqsManagedSseEnabled"] is True, queue_id
    for policy in synth.of_type("AWS::SQS::QueuePolicy").values():
        denies = [s for s in policy["Properties"]["PolicyDocument"]["Statement"] if s["Effect"] == "Deny"]
        assert denies and denies[0]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


# -- triggers --------------------------------------------------------------------------------------


def test_rules_match_usage_events_mapped_alarms_and_the_schedule(synth: Synth) -> None:
    patterns = {}
    for rule in synth.of_type("AWS::Events::Rule").values():
        props = rule["Properties"]
        key = props.get("ScheduleExpression") or json.dumps(props["EventPattern"], sort_keys=True)
        patterns[key] = props["Targets"][0]["Arn"]["Fn::GetAtt"][0]
    usage = {
        "detail-type": ["Bedrock Usage", "Bedrock Usage Batch", "Bedrock Usage Rows"],
        "source": ["guardrail.client"],
    }
    alarms = {
        "detail": {"alarmName": ["bedrock-errors", "runaway-agent"]},
        "detail-type": ["CloudWatch Alarm State Change"],
        "source": ["aws.cloudwatch"],
    }
    assert patterns == {
        json.dumps(usage, sort_keys=True): logical_id_of_function(synth, f"{PREFIX}-usage"),
        json.dumps(alarms, sort_keys=True): logical_id_of_function(synth, f"{PREFIX}-alarm"),
        "rate(5 minutes)": logical_id_of_function(synth, f"{PREFIX}-schedule"),
    }


def test_the_usage_rule_hears_what_clients_send_packed_or_one_report_per_event() -> None:
    # The stack's copy of the contract (CDK cannot import the client) is the client's: old clients send
    # `Bedrock Usage`, issue 19's `Bedrock Usage Batch`, new ones `Bedrock Usage Rows`; a rule missing one
    # loses those reports.
    assert USAGE_EVENT_SOURCE == usage_event.USAGE_EVENT_SOURCE
    assert USAGE_EVENT_DETAIL_TYPES == usage_event.USAGE_DETAIL_TYPES
    assert set(USAGE_EVENT_DETAIL_TYPES) == {
        usage_event.USAGE_DETAIL_TYPE,
        usage_event.USAGE_BATCH_DETAIL_TYPE,
        usage_event.USAGE_ROWS_DETAIL_TYPE,
    }


def test_invocation_logging_custom_resource_targets_the_created_log_group(synth: Synth) -> None:
    ((_, resource),) = synth.of_type("Custom::BedrockInvocationLogging").items()
    groups = synth.of_type("AWS::Logs::LogGroup")
    group_id = resource["Properties"]["LogGroupName"]["Ref"]
    assert groups[group_id]["Properties"]["RetentionInDays"] == 14
    (sub,) = synth.of_type("AWS::Logs::SubscriptionFilter").values()
    assert sub["Properties"]["LogGroupName"] == {"Ref": group_id}
    assert any(d.startswith("IngestInvocationLogSubscription") for d in as_list(resource["DependsOn"]))


# -- alerting --------------------------------------------------------------------------------------


def test_topic_is_encrypted_with_a_rotating_key_that_cloudwatch_may_use(synth: Synth) -> None:
    ((key_id, key),) = synth.of_type("AWS::KMS::Key").items()
    ((_, topic),) = synth.of_type("AWS::SNS::Topic").items()
    assert topic["Properties"]["KmsMasterKeyId"] == {"Fn::GetAtt": [key_id, "Arn"]}
    assert key["Properties"]["EnableKeyRotation"] is True
    cloudwatch = [
        s
        for s in key["Properties"]["KeyPolicy"]["Statement"]
        if s.get("Principal") == {"Service": "cloudwatch.amazonaws.com"}
    ]
    assert cloudwatch and set(cloudwatch[0]["Action"]) == {"kms:Decrypt", "kms:GenerateDataKey*"}
    (policy,) = synth.of_type("AWS::SNS::TopicPolicy").values()
    assert any(s["Effect"] == "Deny" for s in policy["Properties"]["PolicyDocument"]["Statement"])


def topic_policy_statements(synth: Synth) -> list[dict[str, Any]]:
    (topic_id,) = synth.of_type("AWS::SNS::Topic")
    (policy,) = synth.of_type("AWS::SNS::TopicPolicy").values()
    assert policy["Properties"]["Topics"] == [{"Ref": topic_id}]
    statements: list[dict[str, Any]] = policy["Properties"]["PolicyDocument"]["Statement"]
    for st in statements:
        assert st["Resource"] == {"Ref": topic_id}
    return statements


def alarm_arn(name: str) -> str:
    return f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:{name}"


def test_alert_topic_policy_keeps_the_tls_deny_and_lets_this_stacks_alarms_publish(synth: Synth) -> None:
    # A topic policy replaces SNS's default one: without an allow, no alarm could publish.
    deny, allow = sorted(topic_policy_statements(synth), key=lambda st: st["Effect"] != "Deny")
    assert deny["Effect"] == "Deny" and deny["Principal"] == "*" and deny["Action"] == "sns:Publish"
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert allow["Effect"] == "Allow" and allow["Action"] == "sns:Publish"
    assert allow["Principal"] == {"Service": "cloudwatch.amazonaws.com"}  # the only publisher the stack wires
    assert allow["Condition"]["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
    pattern = resolve(allow["Condition"]["ArnLike"]["aws:SourceArn"])
    assert pattern == f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:{PREFIX}-*"
    # Every alarm of the stack matches; another team's alarm, or one in another Region, does not.
    names = list(alarms(synth))
    assert len(names) >= 16
    assert all(fnmatchcase(alarm_arn(name), pattern) for name in names)
    assert not fnmatchcase(alarm_arn("payments-cpu-high"), pattern)
    assert not fnmatchcase(f"arn:aws:cloudwatch:eu-west-1:{ACCOUNT}:alarm:{PREFIX}-x", pattern)


def test_ingest_has_reserved_concurrency_by_default_and_its_throttle_alarm_reaches_the_topic(synth: Synth) -> None:
    fns = functions(synth)
    assert fns[f"{PREFIX}-usage"]["Properties"]["ReservedConcurrentExecutions"] == 10
    for role in ("alarm", "reset", "schedule"):
        assert "ReservedConcurrentExecutions" not in fns[f"{PREFIX}-{role}"]["Properties"], role
    (topic_id,) = synth.of_type("AWS::SNS::Topic")
    usage_id = logical_id_of_function(synth, f"{PREFIX}-usage")
    ((name, throttles),) = [
        (n, a)
        for n, a in alarms(synth).items()
        if a.get("MetricName") == "Throttles" and a["Dimensions"][0]["Value"] == {"Ref": usage_id}
    ]
    assert throttles["AlarmActions"] == [{"Ref": topic_id}]
    (allow,) = [st for st in topic_policy_statements(synth) if st["Effect"] == "Allow"]
    assert fnmatchcase(alarm_arn(name), resolve(allow["Condition"]["ArnLike"]["aws:SourceArn"]))


def test_target_arns_must_name_the_account_and_region_the_stack_deploys_to(synth: Synth) -> None:
    # The stack is environment-agnostic here, so CloudFormation checks before it changes anything.
    (rule,) = [v for k, v in synth.template["Rules"].items() if "TargetsInThisAccountAndRegion" in k]
    ((assertion),) = rule["Assertions"]
    assert assertion["Assert"] == {
        "Fn::And": [
            {"Fn::Equals": [{"Ref": "AWS::AccountId"}, ACCOUNT]},
            {"Fn::Equals": [{"Ref": "AWS::Region"}, REGION]},
        ]
    }
    assert ACCOUNT in assertion["AssertDescription"]


def test_target_roles_must_name_the_account_the_stack_deploys_to(synth: Synth) -> None:
    (rule,) = [v for k, v in synth.template["Rules"].items() if "RolesInThisAccount" in k]
    ((assertion),) = rule["Assertions"]
    assert assertion["Assert"] == {"Fn::Equals": [{"Ref": "AWS::AccountId"}, ACCOUNT]}
    assert ACCOUNT in assertion["AssertDescription"]


def test_slack_channel_gets_the_topic_and_an_explicit_deny_all_guardrail(synth: Synth) -> None:
    ((_, channel),) = synth.of_type("AWS::Chatbot::SlackChannelConfiguration").items()
    managed = synth.of_type("AWS::IAM::ManagedPolicy")
    (policy_ref,) = channel["Properties"]["GuardrailPolicies"]
    statements = managed[policy_ref["Ref"]]["Properties"]["PolicyDocument"]["Statement"]
    assert statements == [{"Action": "*", "Effect": "Deny", "Resource": "*"}]
    (topic_id,) = synth.of_type("AWS::SNS::Topic")
    assert channel["Properties"]["SnsTopicArns"] == [{"Ref": topic_id}]


# -- alarms ----------------------------------------------------------------------------------------


def alarms(synth: Synth) -> dict[str, dict[str, Any]]:
    return {a["Properties"]["AlarmName"]: a["Properties"] for a in synth.of_type("AWS::CloudWatch::Alarm").values()}


def test_spend_alarm_for_each_level_of_each_concrete_scope(synth: Synth) -> None:
    (topic_id,) = synth.of_type("AWS::SNS::Topic")
    expected = {
        ("global", "alert"): 5,
        ("global", "throttle"): 10,
        ("global", "shutdown"): 25,
        ("tenant:acme", "alert"): 50,
        ("tenant:acme", "throttle"): 80,
        ("tenant:acme", "shutdown"): 100.5,
    }
    found = {}
    for name, alarm in alarms(synth).items():
        if alarm.get("MetricName") != "SpendUSD":
            continue
        dims = {d["Name"]: d["Value"] for d in alarm["Dimensions"]}
        assert alarm["Namespace"] == "BedrockGuardrail" and alarm["Statistic"] == "Maximum"
        assert dims["service"] == PREFIX
        assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
        assert alarm["AlarmActions"] == [{"Ref": topic_id}]
        level = name.rsplit("-", 1)[1]
        found[(dims["scope"], level)] = alarm["Threshold"]
    assert found == expected  # app:* has no alarm: its scopes are only known at run time


def test_ingest_failure_alarms_exist(synth: Synth) -> None:
    by_metric = {(a.get("Namespace"), a.get("MetricName")): a for a in alarms(synth).values()}
    usage_id = logical_id_of_function(synth, f"{PREFIX}-usage")
    for metric in ("Errors", "Throttles"):
        alarm = [
            a
            for a in alarms(synth).values()
            if a.get("MetricName") == metric
            and a["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": usage_id}}]
        ]
        assert alarm and alarm[0]["Threshold"] == 1, metric
    assert ("AWS/Bedrock", "ModelInvocationLogsCloudWatchDeliveryFailure") in by_metric
    delivery = by_metric[("AWS/Logs", "DeliveryErrors")]
    assert {d["Name"]: d["Value"] for d in delivery["Dimensions"]}["FilterName"] == f"{PREFIX}-usage"
    queue_alarms = [a for a in alarms(synth).values() if a.get("MetricName") == "ApproximateNumberOfMessagesVisible"]
    assert len(queue_alarms) == len(synth.of_type("AWS::SQS::Queue")) == 6
    assert f"{PREFIX}-effects-failed" in alarms(synth)


def test_every_alarm_notifies_the_topic_and_ignores_missing_data(synth: Synth) -> None:
    (topic_id,) = synth.of_type("AWS::SNS::Topic")
    for name, alarm in alarms(synth).items():
        assert name.startswith(f"{PREFIX}-")
        assert alarm["AlarmActions"] == [{"Ref": topic_id}], name
        assert alarm["TreatMissingData"] == "notBreaching", name


# -- dashboard -------------------------------------------------------------------------------------


def test_dashboard_shows_spend_vs_thresholds_level_records_tokens_and_effects(synth: Synth) -> None:
    ((_, dashboard),) = synth.of_type("AWS::CloudWatch::Dashboard").items()
    body = json.dumps(dashboard["Properties"]["DashboardBody"])
    for needle in (
        "SpendUSD",
        "Level",
        "RecordsIngested",
        "RecordsQuarantined",
        "DuplicatesDropped",
        "EffectsApplied",
        "EffectsFailed",
        "InputTokenCount",
        "OutputTokenCount",
        "tenant:acme",
    ):
        assert needle in body, needle
    for threshold in ('\\"value\\":5', '\\"value\\":10', '\\"value\\":25', '\\"value\\":100.5'):
        assert threshold in body, threshold
