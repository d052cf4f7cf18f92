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
    assert props.function_names == {r: f"bedrock-guardrail-{r}" for r in ("usage", "alarm", "reset", "schedule")}


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
