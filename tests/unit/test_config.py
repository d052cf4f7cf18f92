"""Settings: defaults, several budgets, and errors that name the variable and the accepted form."""

from __future__ import annotations

from decimal import Decimal

import pytest

from guardrail.core.config import load_settings
from guardrail.core.errors import ConfigError
from guardrail.core.models import Level


def test_defaults_are_one_global_daily_budget_at_5_10_25() -> None:
    (budget,) = load_settings().budget_list()
    assert budget.selector == "global" and budget.window == "day"
    assert budget.thresholds.as_strings() == {"alert": "5", "throttle": "10", "shutdown": "25"}


def test_flat_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GUARDRAIL_THRESHOLDS", "alert=1.5,throttle=2,shutdown=3.25")
    monkeypatch.setenv("GUARDRAIL_TARGET_FUNCTIONS", "chat-api, arn:aws:lambda:us-east-1:123456789012:function:worker")
    monkeypatch.setenv("GUARDRAIL_ALARM_LEVELS", '{"bedrock-errors": "throttle"}')
    monkeypatch.setenv("GUARDRAIL_TIMEZONE", "Europe/Berlin")
    s = load_settings()
    (budget,) = s.budget_list()
    assert budget.thresholds.shutdown == Decimal("3.25")
    assert budget.targets == ("chat-api", "arn:aws:lambda:us-east-1:123456789012:function:worker")
    assert s.alarm_levels == {"bedrock-errors": Level.THROTTLE}
    assert str(s.zone) == "Europe/Berlin"


def test_several_budgets_from_one_json_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "GUARDRAIL_BUDGETS",
        '[{"scope": "global"}, {"scope": "app:*", "thresholds": "alert=1,throttle=2,shutdown=5"},'
        ' {"scope": "tenant:acme", "window": "month", "thresholds": {"alert": 0.1, "throttle": 80, "shutdown": 100}}]',
    )
    budgets = {b.selector: b for b in load_settings().budget_list()}
    assert set(budgets) == {"global", "app:*", "tenant:acme"}
    assert budgets["app:*"].thresholds.alert == Decimal(1)
    assert budgets["tenant:acme"].thresholds.alert == Decimal("0.1")  # exact, not 0.1000000000000000055
    assert budgets["tenant:acme"].window == "month"


@pytest.mark.parametrize(
    ("var", "value", "names"),
    [
        ("GUARDRAIL_THRESHOLDS", "alert=five", "alert=5,throttle=10,shutdown=25"),
        ("GUARDRAIL_THRESHOLDS", "alert=20,throttle=10,shutdown=25", "alert <= throttle"),
        ("GUARDRAIL_WINDOW", "week", "hour, day, month"),
        ("GUARDRAIL_TIMEZONE", "Mars/Olympus", "IANA"),
        ("GUARDRAIL_MODE", "yolo", "enforce or dry-run"),
        ("GUARDRAIL_BUDGETS", "[{not json", "JSON"),
        ("GUARDRAIL_ALARM_LEVELS", '{"x": "panic"}', "normal, alert, throttle, shutdown"),
    ],
)
def test_bad_setting_names_variable_and_accepted_form(
    monkeypatch: pytest.MonkeyPatch, var: str, value: str, names: str
) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert var in str(err.value)
    assert names in str(err.value)


def test_own_function_as_target_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GUARDRAIL_OWN_FUNCTIONS", "guardrail-usage,guardrail-reset")
    monkeypatch.setenv("GUARDRAIL_TARGET_FUNCTIONS", "chat-api,arn:aws:lambda:us-east-1:1:function:guardrail-usage")
    with pytest.raises(ConfigError, match="guardrail-usage"):
        load_settings()


def test_variables_are_read_in_any_case_and_a_keyword_override_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("guardrail_window", "hour")
    monkeypatch.setenv("GUARDRAIL_MODE", "dry-run")
    monkeypatch.setenv("GUARDRAIL_PRICE_OVERRIDES", '{"my-model": {"input": 1, "output": 5}}')
    s = load_settings(mode="enforce")
    assert (s.window, s.mode) == ("hour", "enforce")
    assert s.price_overrides["my-model"].output == Decimal(5)


def test_a_json_setting_that_does_not_decode_names_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GUARDRAIL_PRICE_OVERRIDES", "my-model=1")
    with pytest.raises(ConfigError, match="GUARDRAIL_PRICE_OVERRIDES: not valid JSON"):
        load_settings()
