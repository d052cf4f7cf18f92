"""The props model: context parsing, and settings the functions would reject fail at synth."""

from __future__ import annotations

from typing import Any

import pytest
from guardrail_cdk.props import GuardrailProps  # type: ignore[import-not-found, unused-ignore]

from guardrail.core.errors import ConfigError


def context(values: dict[str, Any]) -> Any:
    return values.get


def test_defaults_give_one_global_budget_with_the_design_thresholds() -> None:
    props = GuardrailProps.from_context(context({}))
    settings = props.runtime_settings()
    (budget,) = settings.budget_list()
    assert (budget.selector, str(budget.thresholds.shutdown)) == ("global", "25")
    assert props.function_names == {
        r: f"bedrock-guardrail-{r}" for r in ("usage", "alarm", "reset", "schedule", "slack")
    }


def test_single_field_overrides_take_text_or_json() -> None:
    props = GuardrailProps.from_context(
        context(
            {
                "guardrail": '{"mode": "enforce", "targetFunctions": ["a"]}',
                "guardrail:mode": "dry-run",
                "guardrail:targetFunctions": "chat-api, worker",
                "guardrail:alarmLevels": '{"bedrock-errors": "Shutdown"}',
            }
        )
    )
    assert props.mode == "dry-run"
    assert props.target_functions == ("chat-api", "worker")
    assert props.alarm_levels == {"bedrock-errors": "shutdown"}


@pytest.mark.parametrize(
    "targets",
    [
        ["bedrock-guardrail-usage"],
        ["arn:aws:lambda:us-east-1:123456789012:function:bedrock-guardrail-schedule"],
        ["bedrock-guardrail-reset:$LATEST"],
        ["123456789012:function:bedrock-guardrail-reset"],
        ["arn:aws:lambda:us-east-1:123456789012:function:bedrock-guardrail-reset:live"],
    ],
)
def test_targets_naming_the_guardrails_own_functions_fail_at_synth(targets: list[str]) -> None:
    with pytest.raises(ConfigError, match="own functions"):
        GuardrailProps.from_context(context({"guardrail": {"targetFunctions": targets}}))


def test_a_budget_target_naming_an_own_function_fails_too() -> None:
    guardrail = {"namePrefix": "gr", "budgets": [{"scope": "app:chat", "targets": ["gr-reset"]}]}
    with pytest.raises(ConfigError, match="own functions"):
        GuardrailProps.from_context(context({"guardrail": guardrail}))


@pytest.mark.parametrize(
    ("guardrail", "message"),
    [
        ({"timezone": "Mars/Olympus"}, "GUARDRAIL_TIMEZONE"),
        ({"thresholds": "alert=10,throttle=5,shutdown=25"}, "alert <= throttle <= shutdown"),
        ({"alarmLevels": {"x": "panic"}}, "unknown level"),
        ({"targetFunctions": ["arn:aws:lambda:us-east-1:123456789012:function:api:live"]}, "drop the version"),
        ({"invocationLogs": {"mode": "existing"}}, "needs logGroupName"),
        ({"modee": "enforce"}, "guardrail.modee"),
        ({"logRetentionDays": 31}, "retention"),
    ],
)
def test_bad_settings_fail_at_synth_with_a_message_naming_them(guardrail: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        GuardrailProps.from_context(context({"guardrail": guardrail}))


def test_environment_larger_than_lambda_allows_fails_at_synth() -> None:
    budgets = [{"scope": f"tenant:t{i:04d}", "thresholds": "alert=1,throttle=2,shutdown=3"} for i in range(80)]
    with pytest.raises(ConfigError, match="4 KB"):
        GuardrailProps.from_context(context({"guardrail": {"budgets": budgets}}))


def test_a_misspelt_per_field_context_key_fails_naming_the_known_keys() -> None:
    # Given `-c guardrail:tresholds=1` (a typo that used to synthesize with default thresholds)
    values = {"guardrail": {}, "guardrail:tresholds": 1, "@aws-cdk/core:checkSecretUsage": True}
    # When the props are read, Then the message names the key, the likely field and every known key
    with pytest.raises(ConfigError) as raised:
        GuardrailProps.from_context(context(values), values.keys())
    message = str(raised.value)
    assert "'guardrail:tresholds'" in message and "did you mean 'guardrail:thresholds'" in message
    for key in ("guardrail:targetFunctions", "guardrail:ingestReservedConcurrency", "guardrail:stackName"):
        assert key in message


def test_a_misspelt_key_fails_the_app_too(monkeypatch: pytest.MonkeyPatch) -> None:
    from guardrail_cdk.application import create_app  # type: ignore[import-not-found, unused-ignore]

    with pytest.raises(ConfigError, match="unknown context key 'guardrail:tresholds'"):
        create_app(context={"guardrail:tresholds": "1", "guardrail:bundleDependencies": False})


def test_ingest_reserved_concurrency_defaults_to_ten_and_null_turns_it_off() -> None:
    assert GuardrailProps.from_context(context({})).ingest_reserved_concurrency == 10
    off = GuardrailProps.from_context(context({"guardrail:ingestReservedConcurrency": "null"}))
    assert off.ingest_reserved_concurrency is None
    with pytest.raises(ConfigError, match="ingestReservedConcurrency"):
        GuardrailProps.from_context(context({"guardrail:ingestReservedConcurrency": "0"}))


def test_target_arns_of_two_accounts_or_regions_fail_at_synth() -> None:
    targets = [
        "arn:aws:lambda:us-east-1:123456789012:function:a",
        "arn:aws:lambda:eu-west-1:123456789012:function:b",
    ]
    with pytest.raises(ConfigError, match="more than one place"):
        GuardrailProps.from_context(context({"guardrail": {"targetFunctions": targets}}))


def test_target_arn_of_another_account_fails_when_the_stack_has_an_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from guardrail_cdk.application import create_app

    # Given the CDK CLI resolved the deploy environment (it sets these from the caller's credentials)
    monkeypatch.setenv("CDK_DEFAULT_ACCOUNT", "111111111111")
    monkeypatch.setenv("CDK_DEFAULT_REGION", "us-east-1")
    guardrail = {
        "bundleDependencies": False,
        "invocationLogs": {"mode": "existing", "logGroupName": "/aws/bedrock/invocations"},
        "targetFunctions": ["arn:aws:lambda:us-east-1:222222222222:function:chat-api"],
    }
    with pytest.raises(ConfigError, match="account 222222222222 / Region us-east-1, but the stack deploys to "):
        create_app(context={"guardrail": guardrail})


# -- role targets ----------------------------------------------------------------------------------

OTHER_ACCOUNT = "210987654321"


def construct(guardrail: dict[str, Any], tmp_path: Any, monkeypatch: pytest.MonkeyPatch, account: str = "") -> None:
    """Build the stack (no synth): the construct-level checks run here."""
    from guardrail_cdk.application import create_app  # type: ignore[import-not-found, unused-ignore]

    if account:
        monkeypatch.setenv("CDK_DEFAULT_ACCOUNT", account)
        monkeypatch.setenv("CDK_DEFAULT_REGION", "us-east-1")
    create_app(context={"guardrail": {"bundleDependencies": False, **guardrail}}, outdir=str(tmp_path))


@pytest.mark.parametrize(
    "role",
    [
        "arn:aws:iam::123456789012:role/BedrockCostGuardrail-EnforcementAlarmRoleA1B2C3-XyZ",  # CloudFormation's name
        "arn:aws:iam::123456789012:role/bedrock-guardrail-usage",
    ],
)
def test_synth_refuses_the_guardrails_own_roles(role: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="guardrail's own roles"):
        construct({"targetRoles": [role]}, tmp_path, monkeypatch)


def test_synth_refuses_a_role_in_another_account(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    role = f"arn:aws:iam::{OTHER_ACCOUNT}:role/batch-jobs"
    with pytest.raises(ConfigError, match="denies roles only in its own account"):
        construct({"targetRoles": [role]}, tmp_path, monkeypatch, account="123456789012")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"targetRoles": ["arn:aws:iam::123456789012:user/alice"]}, "not an IAM role ARN"),
        (
            {
                "targetRoles": [f"arn:aws:iam::{OTHER_ACCOUNT}:role/batch-jobs"],
                "budgets": [{"scope": "app:x", "targets": ["arn:aws:iam::123456789012:role/other"]}],
            },
            "more than one account",
        ),
        (
            {
                "targetRoles": [f"arn:aws:iam::{OTHER_ACCOUNT}:role/batch-jobs"],
                "targetFunctions": ["arn:aws:lambda:us-east-1:123456789012:function:chat-api"],
            },
            "more than one account",
        ),
    ],
)
def test_role_targets_that_could_never_be_denied_fail_before_synth(values: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        GuardrailProps.from_mapping(values)


def test_role_targets_reach_the_functions_environment() -> None:
    role = "arn:aws:iam::123456789012:role/teams/batch-jobs"
    props = GuardrailProps.from_mapping({"targetRoles": [role], "targetFunctions": ["chat-api"]})
    (budget,) = props.runtime_settings().budget_list()
    assert budget.targets == ("chat-api", role)


def test_slack_app_names_its_secret_and_slack_user_ids_and_alone_turns_the_buttons_on() -> None:
    webhook = {"slackWebhookSecret": "guardrail/slack"}
    plain = GuardrailProps.from_context(context({"guardrail": webhook}))
    env = plain.function_environment(table_name="t", topic_arn="arn:t", slack_secret_arn="arn:s")
    assert "GUARDRAIL_SLACK_BUTTONS" not in env  # nothing would answer a click
    app = {**webhook, "slackApp": {"secret": "guardrail/slack-app", "oncallUsers": "U012AB, T0ABC/W0XYZ"}}
    props = GuardrailProps.from_context(context({"guardrail": app}))
    assert props.slack_app is not None and props.slack_app.oncall_users == ("U012AB", "T0ABC/W0XYZ")
    env = props.function_environment(table_name="t", topic_arn="arn:t", slack_secret_arn="arn:s")
    assert env["GUARDRAIL_SLACK_BUTTONS"] == "true"
    with pytest.raises(ConfigError, match="not a Slack user id"):
        GuardrailProps.from_context(context({"guardrail": {"slackApp": {"secret": "s", "oncallUsers": ["alice"]}}}))
