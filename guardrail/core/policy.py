"""Escalation policy: totals + current flag -> the transition to make, if any. Pure: no I/O, no clock.

Rules (DESIGN.md sections 1 and 6):
- The level follows the highest threshold the window's spend has reached; levels only go up on spend.
- After a reset, thresholds count from the spend at reset time in that window (re-arm baseline), or
  nothing escalates before `snooze_until`.
- At the next window alert and throttle clear; shutdown stays until on-call resets it, unless the
  budget says `shutdown_auto_clears`.
- An alarm raises the level to its mapped level (never lowers a higher one); its OK clears only what
  that alarm set, and only down to what spend and the other active alarms still demand.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Literal

from guardrail.core.models import ESCALATION_LEVELS, Budget, Flag, Level, Rearm, ScopeTotals, Transition, usd

AlarmState = Literal["ALARM", "OK", "INSUFFICIENT_DATA"]


def effective_spend(flag: Flag, totals: ScopeTotals) -> Decimal:
    rearm = flag.rearm
    if rearm is not None and rearm.window_key == totals.window.key:
        return max(Decimal(0), totals.spend - rearm.baseline_spend)
    return totals.spend


def snoozed(flag: Flag, now: datetime) -> bool:
    return flag.rearm is not None and flag.rearm.snooze_until is not None and now < flag.rearm.snooze_until


def spend_level(flag: Flag, budget: Budget, totals: ScopeTotals, now: datetime) -> Level:
    if snoozed(flag, now):
        return Level.NORMAL
    return budget.thresholds.level_for(effective_spend(flag, totals))


def alarm_floor(alarms: dict[str, Level], excluding: str | None = None) -> Level:
    return max((lvl for name, lvl in alarms.items() if name != excluding), default=Level.NORMAL)


def _crossed(low: Level, high: Level) -> tuple[Level, ...]:
    return tuple(lvl for lvl in ESCALATION_LEVELS if low < lvl <= high)


def _kept_on_lowering(flag: Flag, budget: Budget) -> Level:
    """What survives an automatic lowering: a shutdown, unless the budget lets it clear itself."""
    if flag.level == Level.SHUTDOWN and not budget.shutdown_auto_clears:
        return Level.SHUTDOWN
    return Level.NORMAL


def evaluate(flag: Flag, budget: Budget, totals: ScopeTotals, now: datetime) -> Transition | None:
    """After new spend (or on schedule): escalate, or clear at window rollover."""
    by_spend = spend_level(flag, budget, totals, now)
    floor = alarm_floor(flag.active_alarms)
    window = totals.window.key
    rolled_over = flag.level > Level.NORMAL and flag.trigger != "alarm" and flag.window_key != window
    if rolled_over:
        target = max(by_spend, floor, _kept_on_lowering(flag, budget))
        if target < flag.level:
            return Transition(
                scope=flag.scope,
                from_level=flag.level,
                to_level=target,
                trigger="rollover",
                reason=f"new {totals.window.kind} window {totals.window.start.isoformat()}: "
                f"{flag.level.label} from the previous window clears",
                window_key=window,
                spend=totals.spend,
            )
    target = max(by_spend, floor)
    if target > flag.level:
        threshold = budget.thresholds.for_level(target) if by_spend >= target else None
        reason = (
            f"{totals.window.kind} spend {usd(totals.spend)} reached the {target.label} threshold {usd(threshold)}"
            if threshold is not None
            else f"alarm floor {target.label}"
        )
        return Transition(
            scope=flag.scope,
            from_level=flag.level,
            to_level=target,
            trigger="threshold",
            reason=reason,
            window_key=window,
            spend=totals.spend,
            crossed=_crossed(flag.level, target),
        )
    return None


def on_alarm(
    flag: Flag,
    budget: Budget,
    totals: ScopeTotals,
    now: datetime,
    *,
    alarm: str,
    state: AlarmState,
    level: Level,
) -> Transition | None:
    """An alarm mapped to `level` changed state. INSUFFICIENT_DATA changes nothing."""
    window = totals.window.key
    if state == "ALARM":
        if flag.active_alarms.get(alarm) == level and flag.level >= level:
            return None  # the same alarm again: already in force
        to_level = max(flag.level, level)
        return Transition(
            scope=flag.scope,
            from_level=flag.level,
            to_level=to_level,
            trigger="alarm",
            reason=f"alarm {alarm} is in ALARM (mapped to {level.label})",
            window_key=window,
            spend=totals.spend,
            crossed=_crossed(flag.level, to_level),
            alarm=(alarm, level),
        )
    if state == "OK" and alarm in flag.active_alarms:
        others = alarm_floor(flag.active_alarms, excluding=alarm)
        still = max(spend_level(flag, budget, totals, now), others)
        to_level = flag.level
        if flag.trigger == "alarm" and flag.active_alarms[alarm] >= flag.level and still < flag.level:
            to_level = max(still, _kept_on_lowering(flag, budget))
        return Transition(
            scope=flag.scope,
            from_level=flag.level,
            to_level=to_level,
            trigger="alarm",
            reason=f"alarm {alarm} is OK again"
            + ("" if to_level < flag.level else f"; {flag.level.label} stays ({_why_stays(flag, still, budget)})"),
            window_key=window,
            spend=totals.spend,
            alarm=(alarm, None),
        )
    return None


def _why_stays(flag: Flag, still: Level, budget: Budget) -> str:
    if flag.trigger != "alarm":
        return f"set by {flag.trigger}, not by this alarm"
    if still >= flag.level:
        return "spend or another alarm still demands it"
    if flag.level == Level.SHUTDOWN and not budget.shutdown_auto_clears:
        return "a shutdown waits for on-call reset"
    return "set by a higher alarm"


def snooze_refusal(snooze_until: datetime | None, now: datetime, max_snooze: timedelta) -> str | None:
    """Why a snooze is refused, or None: it must end in the future and within `max_snooze` of now (an
    unbounded snooze would silence a scope across windows)."""
    if snooze_until is None:
        return None
    if snooze_until <= now:
        return f"reset refused: snooze_until {snooze_until.isoformat()} is in the past"
    if snooze_until - now > max_snooze:
        hours = max_snooze.total_seconds() / 3600
        return (
            f"reset refused: snooze_until {snooze_until.isoformat()} is more than {hours:g} h away; the longest "
            f"snooze is {hours:g} h (GUARDRAIL_MAX_SNOOZE_HOURS). Snooze for less and reset again when it ends"
        )
    return None


def on_reset(
    flag: Flag,
    totals: ScopeTotals,
    *,
    reason: str,
    snooze_until: datetime | None = None,
    rearm_from_zero: bool = False,
) -> Transition:
    """On-call restores normal. By default thresholds count again from the spend at reset time."""
    baseline = Decimal(0) if rearm_from_zero else totals.spend
    return Transition(
        scope=flag.scope,
        from_level=flag.level,
        to_level=Level.NORMAL,
        trigger="reset",
        reason=reason,
        window_key=totals.window.key,
        spend=totals.spend,
        rearm=Rearm(window_key=totals.window.key, baseline_spend=baseline, snooze_until=snooze_until),
    )


def apply(flag: Flag, transition: Transition, budget: Budget | None, now: datetime) -> Flag:
    """The flag after a transition (the next version). Effects fill targets and mark `applied`."""
    alarms = dict(flag.active_alarms)
    if transition.alarm is not None:
        name, level = transition.alarm
        if level is None:
            alarms.pop(name, None)
        else:
            alarms[name] = level
    if transition.trigger == "reset":
        alarms = {}
    level_changed = transition.to_level != flag.level
    downgrades = dict(budget.model_downgrades) if budget and transition.to_level >= Level.THROTTLE else {}
    return replace(
        flag,
        level=transition.to_level,
        since=now if level_changed else flag.since,
        trigger=transition.trigger if level_changed or transition.trigger == "reset" else flag.trigger,
        reason=transition.reason if level_changed else flag.reason,
        window_key=transition.window_key if level_changed else flag.window_key,
        version=flag.version + 1,
        rearm=transition.rearm if transition.trigger == "reset" else flag.rearm,
        active_alarms=alarms,
        model_downgrades=downgrades,
        applied=not level_changed,
        previous_level=flag.level if level_changed else flag.previous_level,
    )
