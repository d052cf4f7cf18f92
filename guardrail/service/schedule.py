"""The periodic run: window rollover, drift repair, and reconciliation against Bedrock's own metrics."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from guardrail.core.models import Budget, Flag, Level, UsageRecord
from guardrail.core.scopes import GLOBAL
from guardrail.service.confirmations import overdue
from guardrail.service.effects import UNTOUCHED, EffectReport, Effects
from guardrail.service.engine import Committed, Engine
from guardrail.service.holds import Outcome
from guardrail.service.messages import alert_message
from guardrail.service.targets import aws_error
from guardrail.store.targets import TOMBSTONE_TTL

if TYPE_CHECKING:
    from mypy_boto3_cloudwatch import CloudWatchClient

# AWS/Bedrock runtime metrics (dimension ModelId); token counts exclude cache tokens, like the logs.
TOKEN_METRICS = {
    "InputTokenCount": "input_tokens",
    "OutputTokenCount": "output_tokens",
    "CacheReadInputTokenCount": "cache_read_tokens",
    "CacheWriteInputTokenCount": "cache_write_tokens",
}
UNTRACKED_RATIO = Decimal("0.10")
UNTRACKED_MIN_USD = Decimal(1)


@dataclass
class ScheduleReport:
    transitions: list[str] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    reconciliation: dict[str, str] = field(default_factory=dict)


# A ledger batch is applied by its writer within the usage function's timeout; one older was left by a writer
# that stopped, and a redelivery may never come: the schedule run applies it.
OPEN_BATCH_GRACE = timedelta(minutes=10)


def _transition_line(committed: Committed) -> str:
    t = committed.transition
    return f"{t.scope}: {t.from_level.label} -> {t.to_level.label} ({t.trigger})"


def run(engine: Engine, effects: Effects, cloudwatch: CloudWatchClient | None) -> ScheduleReport:
    report = ScheduleReport()
    # 0. Spend claimed but not yet added to the counters, first: every later step reads the counters.
    done, applied = engine.complete_open_batches(OPEN_BATCH_GRACE)
    report.repaired.extend(f"ledger: applied batch {batch}, left open by its writer" for batch in done)
    report.transitions.extend(map(_transition_line, applied))
    for flag in engine.flags.list_all():
        budget = engine.resolver.budget_for(flag.scope)
        if budget is None:
            continue
        # 1. Rollover and snooze expiry: the same policy path as new spend.
        report.transitions.extend(map(_transition_line, engine.evaluate_scope(flag.scope)))
        current = engine.flags.get(flag.scope)
        effect = EffectReport(scope=current.scope, level=current.level)
        # 2. Drift repair: a shutdown whose targets are not all at 0, or a half-applied transition.
        if current.level == Level.SHUTDOWN and not engine.settings.dry_run:
            missing = [t for t in effects.targets_of(budget) if t not in current.targets]
            # A target that did not exist (or was refused) at shutdown was said once, in that alert; not drift.
            held = [name for name, state in current.targets.items() if state.status not in UNTOUCHED]
            drifted = [name for name in held if _drifted(effects, name, effect)]
            if missing or drifted or not current.applied:
                if missing:
                    current = effects.shutdown(current, budget, effect)
                    report.repaired.append(f"{current.scope}: saved and stopped {', '.join(missing)}")
                else:
                    current = effects.enforce_zero(current, effect)
                    again = "; ".join(effects.targets.kind(n).repair_text(n) for n in drifted)
                    report.repaired.append(f"{current.scope}: {again or 'finished stopping the targets'}")
                # The invocation that started this shutdown may have died before its alert: tell on-call.
                _alert_repair(engine, effects, current, budget, report.repaired[-1], effect)
        # 3. Restores AWS refused earlier are retried (the account's unreserved pool may have grown), and a
        # transition whose invocation stopped before its notice gets the notice now.
        elif current.level < Level.SHUTDOWN and (current.targets or _notice_pending(engine, current)):
            pending = _notice_pending(engine, current)
            if current.targets:
                names = ", ".join(current.targets)
                current = effects.restore(current, effect, mark_applied=current.applied)
                report.repaired.append(f"{current.scope}: retried restore of {names}")
            if pending:
                _send_pending_notice(engine, effects, current, budget, effect)
                current = effects.mark_applied(current)
                report.repaired.append(f"{current.scope}: sent the pending {current.level.label} notice")
        report.failures.extend(effect.failures + effect.notification_failures)
    if not engine.settings.dry_run:
        repair_holds(engine, effects, report)
        keep_readings(engine, effects, report)
    if cloudwatch is not None and engine.resolver.budget_for(GLOBAL) is not None:
        try:
            report.reconciliation = reconcile(engine, effects, cloudwatch)
        except Exception as exc:
            # A check, not enforcement: rollover and repairs above are done; failing the run would only
            # retry them and park the event in the failure queue. Reported, and tried again next run.
            error = aws_error(exc)
            report.reconciliation = {"error": error}
            report.failures.append(f"reconciliation against AWS/Bedrock metrics failed: {error}")
    return report


# A transition's own invocation sends its notice within seconds; after this the schedule run sends it.
NOTICE_GRACE = timedelta(minutes=2)


def _notice_pending(engine: Engine, flag: Flag) -> bool:
    return not flag.applied and flag.since is not None and engine.now() - flag.since > NOTICE_GRACE


def _send_pending_notice(engine: Engine, effects: Effects, flag: Flag, budget: Budget, effect: EffectReport) -> None:
    reason = f"{flag.reason} (sent by the schedule run: the invocation that made this change stopped first)"
    _notice(engine, effects, flag, budget, effect, from_level=flag.previous_level, reason=reason, actions=[])


def _recent(engine: Engine, released_at: datetime | None) -> bool:
    return released_at is not None and engine.now() - released_at < TOMBSTONE_TTL


def repair_holds(engine: Engine, effects: Effects, report: ScheduleReport) -> None:
    """Target items are the durable record of every stop: a holder whose scope is no longer shut down is
    released (a shutdown that lost a race with its reset), a restore nobody finished is finished, and a
    late 0 on a released target is undone."""
    holds = effects.holds
    levels: dict[str, Level] = {}
    for item in holds.store.list_all():
        out = Outcome()
        for scope in sorted(item.holders):
            if scope not in levels:
                levels[scope] = engine.flags.get(scope).level
            if levels[scope] < Level.SHUTDOWN:
                holds.release(item.function, scope, item.saved, out)
                out.actions.append(f"released {item.function} from {scope} (no longer shut down)")
        after = holds.store.get(item.function)
        if after is not None and after.state == "held" and not after.holders:
            holds.release(item.function, None, after.saved, out)
        # Only within the tombstone's life: later, a 0 is someone's deliberate choice, not our late stop.
        elif (
            after is not None
            and after.state == "released"
            and _recent(engine, after.released_at)
            and after.saved != 0
            and effects.targets.read(item.function).stopped
        ):
            holds.release(item.function, None, after.saved, out)
            out.actions.append(f"{item.function}: a late stop after its release was undone")
        report.repaired.extend(out.actions)
        report.failures.extend(out.failures)


def keep_readings(engine: Engine, effects: Effects, report: ScheduleReport) -> None:
    """Read every configured target nobody holds and keep the reading in its target item (item read first,
    reading kept only if the item did not change since): a shutdown within READING_FRESH saves it without
    reading the target on its critical path (docs/enforcement.md, "Kept readings")."""
    names = list(dict.fromkeys(n for b in engine.resolver.budgets for n in effects.targets_of(b)))
    if not names:
        return
    out = Outcome()
    try:
        items = effects.holds.store.get_many(names)
        for name in names:
            effects.holds.observe(name, items[name], out)
    except Exception as exc:  # a missed reading only costs the next shutdown a read: reported, not fatal
        out.failures.append(f"could not keep target readings: {aws_error(exc)}")
    report.failures.extend(out.failures)


def _alert_repair(
    engine: Engine, effects: Effects, flag: Flag, budget: Budget, repaired: str, effect: EffectReport
) -> None:
    reason = f"schedule run repaired the shutdown ({flag.reason})"
    _notice(engine, effects, flag, budget, effect, from_level=flag.level, reason=reason, actions=[repaired])


def _notice(
    engine: Engine,
    effects: Effects,
    flag: Flag,
    budget: Budget,
    effect: EffectReport,
    *,
    from_level: Level,
    reason: str,
    actions: list[str],
) -> None:
    """One page from the schedule run about a scope's current state (what it did, what failed)."""
    if effects.notifier is None:
        return
    message = alert_message(
        scope=flag.scope,
        from_level=from_level,
        to_level=flag.level,
        budget=budget,
        totals=engine.scope_totals(flag.scope),
        reason=reason,
        actions=actions + effect.actions + [f"FAILED: {f}" for f in effect.failures],
        dry_run=engine.settings.dry_run,
        rearm=flag.rearm,
    )
    effect.notification_failures.extend(effects.notifier.send(message))


def _drifted(effects: Effects, name: str, report: EffectReport) -> bool:
    """A target of a shutdown that is not stopped (unreadable is reported, not called drift)."""
    kind = effects.targets.kind(name)
    current = kind.read(name)
    if not current.readable:
        report.failures.append(f"{name}: could not read {kind.noun}: {current.error}")
        return False
    return not current.stopped


def bedrock_metric_spend(engine: Engine, cloudwatch: CloudWatchClient, start: datetime, end: datetime) -> Decimal:
    """Spend implied by AWS/Bedrock token metrics per model for [start, end)."""
    models: set[str] = set()
    paginator = cloudwatch.get_paginator("list_metrics")
    for page in paginator.paginate(Namespace="AWS/Bedrock", MetricName="InputTokenCount"):
        for listed in page.get("Metrics", []):
            for dim in listed.get("Dimensions", []):
                if dim.get("Name") == "ModelId":
                    models.add(dim["Value"])
    if not models:
        return Decimal(0)
    # Periods CloudWatch keeps for the whole window (1 min for 15 days, 1 h for 63); the end is pushed one
    # period out so the current, partial period is included.
    span = (end - start).total_seconds()
    period = 60 if span <= 6 * 3600 else 300 if span <= 14 * 86400 else 3600
    end = end + timedelta(seconds=period)
    queries: list[Any] = []
    ids: dict[str, tuple[str, str]] = {}
    for i, model in enumerate(sorted(models)):
        for j, (metric, attr) in enumerate(TOKEN_METRICS.items()):
            qid = f"m{i}_{j}"
            ids[qid] = (model, attr)
            queries.append(
                {
                    "Id": qid,
                    "MetricStat": {
                        "Metric": {
                            "Namespace": "AWS/Bedrock",
                            "MetricName": metric,
                            "Dimensions": [{"Name": "ModelId", "Value": model}],
                        },
                        "Period": period,
                        "Stat": "Sum",
                    },
                    "ReturnData": True,
                }
            )
    tokens: dict[str, dict[str, int]] = {m: dict.fromkeys(TOKEN_METRICS.values(), 0) for m in models}
    for k in range(0, len(queries), 500):
        kwargs: dict[str, Any] = {"MetricDataQueries": queries[k : k + 500], "StartTime": start, "EndTime": end}
        while True:
            resp = cloudwatch.get_metric_data(**kwargs)
            for result in resp.get("MetricDataResults", []):
                model, attr = ids[result["Id"]]
                tokens[model][attr] += int(sum(result.get("Values", [])))
            if not resp.get("NextToken"):
                break
            kwargs["NextToken"] = resp["NextToken"]
    total = Decimal(0)
    for model, counts in tokens.items():
        record = UsageRecord(
            request_id="reconcile",
            timestamp=start,
            model_id=model,
            input_tokens=counts["input_tokens"],
            output_tokens=counts["output_tokens"],
            cache_read_tokens=counts["cache_read_tokens"],
            cache_write_tokens=counts["cache_write_tokens"],
        )
        # Metric sums span many requests: base rates, as per-request tiers cannot be told from a sum.
        total += engine.pricer.rates_for(model).cost(record, tiered=False)
    return total


def reconcile(engine: Engine, effects: Effects, cloudwatch: CloudWatchClient) -> dict[str, str]:
    """Compare the ledger's global spend with what Bedrock's metrics imply; alert when the ledger is
    lower by more than 10% and $1 (invocation logging off, or callers bypassing it)."""
    budget = engine.budget(GLOBAL)
    window = engine.current_window(budget)
    totals = engine.scope_totals(GLOBAL)
    ledger = totals.spend
    implied = bedrock_metric_spend(engine, cloudwatch, window.start, engine.now())
    gap = implied - ledger
    out = {"ledger_usd": str(ledger), "bedrock_metrics_usd": str(implied), "gap_usd": str(gap)}
    late = overdue(engine, totals)
    if late is not None:  # counted, but only a client said so: no invocation log confirmed it in time
        out["unconfirmed_usd"] = str(late.spend)
        out["unconfirmed_requests"] = str(late.requests)
    if gap > UNTRACKED_MIN_USD and gap > implied * UNTRACKED_RATIO:
        out["alert"] = "untracked Bedrock spend"
        if effects.notifier is not None:
            flag = engine.flags.get(GLOBAL)
            message = alert_message(
                scope=GLOBAL,
                from_level=flag.level,
                to_level=flag.level,
                budget=budget,
                totals=engine.scope_totals(GLOBAL),
                reason=(
                    f"untracked Bedrock spend: Bedrock's metrics imply ${implied.quantize(Decimal('0.01'))} this "
                    f"{window.kind}, the ledger has ${ledger.quantize(Decimal('0.01'))}. Check that model invocation "
                    "logging is on and delivered to the guardrail, and that no caller bypasses it"
                    + (
                        f"; ${late.spend.quantize(Decimal('0.01'))} of the ledger is unconfirmed (client reports "
                        f"no log confirmed within {late.after_minutes} min)"
                        if late is not None
                        else ""
                    )
                ),
                actions=["none: the ledger only counts what it sees; thresholds act on the ledger"],
                dry_run=engine.settings.dry_run,
                rearm=flag.rearm,
            )
            failures = effects.notifier.send(message)
            if failures:
                out["notification_failures"] = "; ".join(failures)
    return out
