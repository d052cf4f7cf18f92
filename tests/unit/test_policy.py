"""Policy (pure): totals + flag -> transition."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from guardrail.core import policy
from guardrail.core.models import Budget, Flag, Level, Rearm, ScopeTotals, Thresholds, usd
from guardrail.core.windows import window_for

NOW = datetime(2026, 11, 22, 10, 45, tzinfo=UTC)
UTCZ = ZoneInfo("UTC")
TODAY = window_for(NOW, "day", UTCZ)
TOMORROW = window_for(NOW + timedelta(days=1), "day", UTCZ)
BUDGET = Budget(
    "global",
    "day",
    Thresholds(Decimal(5), Decimal(10), Decimal(25)),
    targets=("chat-api",),
    model_downgrades={"claude-sonnet": "claude-haiku"},
)


def totals(spend: str, window: object = TODAY) -> ScopeTotals:
    return ScopeTotals(scope="global", window=window, spend=Decimal(spend))  # type: ignore[arg-type]


def flag(level: Level = Level.NORMAL, **kw: object) -> Flag:
    return Flag(scope="global", level=level, window_key=TODAY.key, version=3, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("spend", "start", "expected"),
    [
        ("4.99", Level.NORMAL, None),
        ("5", Level.NORMAL, Level.ALERT),
        ("9.999999", Level.NORMAL, Level.ALERT),
        ("10", Level.ALERT, Level.THROTTLE),
        ("30", Level.NORMAL, Level.SHUTDOWN),
        ("30", Level.SHUTDOWN, None),
        ("6", Level.THROTTLE, None),  # spend never lowers a level inside a window
    ],
)
def test_escalation_follows_highest_threshold_reached(spend: str, start: Level, expected: Level | None) -> None:
    t = policy.evaluate(flag(start), BUDGET, totals(spend), NOW)
    assert (t.to_level if t else None) == expected
    if t:
        assert t.from_level == start and t.trigger == "threshold"
        assert t.crossed == tuple(
            lvl for lvl in (Level.ALERT, Level.THROTTLE, Level.SHUTDOWN) if start < lvl <= expected
        )
        assert usd(t.spend) in t.reason


def test_apply_sets_downgrades_from_throttle_and_bumps_version() -> None:
    t = policy.evaluate(flag(), BUDGET, totals("12"), NOW)
    assert t is not None
    after = policy.apply(flag(), t, BUDGET, NOW)
    assert (after.level, after.version, after.since, after.applied) == (Level.THROTTLE, 4, NOW, False)
    assert after.model_downgrades == {"claude-sonnet": "claude-haiku"}


def test_rearm_baseline_counts_from_spend_at_reset() -> None:
    f = flag(rearm=Rearm(window_key=TODAY.key, baseline_spend=Decimal(26)))
    assert policy.evaluate(f, BUDGET, totals("30.99"), NOW) is None
    t = policy.evaluate(f, BUDGET, totals("31"), NOW)
    assert t is not None and t.to_level == Level.ALERT


def test_baseline_of_yesterday_does_not_apply_today() -> None:
    f = flag(rearm=Rearm(window_key="day#2026-11-21T00:00:00+00:00", baseline_spend=Decimal(26)))
    t = policy.evaluate(f, BUDGET, totals("6"), NOW)
    assert t is not None and t.to_level == Level.ALERT


def test_snooze_holds_escalation_until_the_time() -> None:
    f = flag(rearm=Rearm(window_key=TODAY.key, snooze_until=NOW + timedelta(hours=1)))
    assert policy.evaluate(f, BUDGET, totals("100"), NOW) is None
    later = policy.evaluate(f, BUDGET, totals("100"), NOW + timedelta(hours=1))
    assert later is not None and later.to_level == Level.SHUTDOWN


@pytest.mark.parametrize(
    ("level", "auto_clears", "expected"),
    [
        (Level.ALERT, False, Level.NORMAL),
        (Level.THROTTLE, False, Level.NORMAL),
        (Level.SHUTDOWN, False, None),
        (Level.SHUTDOWN, True, Level.NORMAL),
    ],
)
def test_rollover_clears_alert_and_throttle_but_not_shutdown(
    level: Level, auto_clears: bool, expected: Level | None
) -> None:
    budget = Budget("global", "day", BUDGET.thresholds, shutdown_auto_clears=auto_clears)
    t = policy.evaluate(flag(level), budget, totals("0", TOMORROW), NOW + timedelta(days=1))
    assert (t.to_level if t else None) == expected
    if t:
        assert t.trigger == "rollover"


def test_rollover_lands_on_what_the_new_window_already_spent() -> None:
    t = policy.evaluate(flag(Level.THROTTLE), BUDGET, totals("6", TOMORROW), NOW + timedelta(days=1))
    assert t is not None and t.to_level == Level.ALERT


def test_alarm_raises_level_but_never_lowers_a_higher_one() -> None:
    up = policy.on_alarm(
        flag(Level.ALERT), BUDGET, totals("6"), NOW, alarm="errors", state="ALARM", level=Level.THROTTLE
    )
    assert up is not None and up.to_level == Level.THROTTLE and up.trigger == "alarm"
    same = policy.on_alarm(
        flag(Level.SHUTDOWN), BUDGET, totals("30"), NOW, alarm="errors", state="ALARM", level=Level.ALERT
    )
    assert same is not None and same.to_level == Level.SHUTDOWN  # recorded as active, level unchanged
    assert policy.apply(flag(Level.SHUTDOWN), same, BUDGET, NOW).active_alarms == {"errors": Level.ALERT}


def test_alarm_ok_clears_only_what_it_set() -> None:
    raised = flag(Level.THROTTLE, trigger="alarm", active_alarms={"errors": Level.THROTTLE})
    ok = policy.on_alarm(raised, BUDGET, totals("1"), NOW, alarm="errors", state="OK", level=Level.THROTTLE)
    assert ok is not None and ok.to_level == Level.NORMAL
    # Spend still demands alert: OK lowers to alert, not normal.
    ok2 = policy.on_alarm(raised, BUDGET, totals("7"), NOW, alarm="errors", state="OK", level=Level.THROTTLE)
    assert ok2 is not None and ok2.to_level == Level.ALERT
    # Level set by threshold: the alarm's OK does not lower it.
    by_spend = flag(Level.THROTTLE, trigger="threshold", active_alarms={"errors": Level.ALERT})
    ok3 = policy.on_alarm(by_spend, BUDGET, totals("12"), NOW, alarm="errors", state="OK", level=Level.ALERT)
    assert ok3 is not None and ok3.to_level == Level.THROTTLE
    assert policy.apply(by_spend, ok3, BUDGET, NOW).active_alarms == {}


def test_alarm_shutdown_stays_after_ok_unless_budget_allows() -> None:
    down = flag(Level.SHUTDOWN, trigger="alarm", active_alarms={"fire": Level.SHUTDOWN})
    ok = policy.on_alarm(down, BUDGET, totals("1"), NOW, alarm="fire", state="OK", level=Level.SHUTDOWN)
    assert ok is not None and ok.to_level == Level.SHUTDOWN and "on-call reset" in ok.reason


def test_unknown_alarm_ok_and_insufficient_data_change_nothing() -> None:
    assert policy.on_alarm(flag(), BUDGET, totals("1"), NOW, alarm="x", state="OK", level=Level.ALERT) is None
    assert (
        policy.on_alarm(flag(), BUDGET, totals("1"), NOW, alarm="x", state="INSUFFICIENT_DATA", level=Level.ALERT)
        is None
    )


def test_reset_goes_to_normal_with_baseline_and_clears_alarms() -> None:
    f = flag(Level.SHUTDOWN, active_alarms={"fire": Level.SHUTDOWN})
    t = policy.on_reset(f, totals("27.5"), reason="runaway agent fixed")
    after = policy.apply(f, t, BUDGET, NOW)
    assert (after.level, after.trigger, after.active_alarms, after.model_downgrades) == (
        Level.NORMAL,
        "reset",
        {},
        {},
    )
    assert after.rearm == Rearm(window_key=TODAY.key, baseline_spend=Decimal("27.5"))


@given(spends=st.lists(st.decimals(min_value=0, max_value=100, places=6), min_size=1, max_size=30))
def test_level_is_monotonic_under_growing_spend_within_a_window(spends: list[Decimal]) -> None:
    f = flag()
    total = Decimal(0)
    for s in spends:
        total += s
        t = policy.evaluate(f, BUDGET, totals(str(total)), NOW)
        if t:
            assert t.to_level > f.level
            f = policy.apply(f, t, BUDGET, NOW)
    assert f.level == BUDGET.thresholds.level_for(total)
