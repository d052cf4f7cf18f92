"""Replay exported Bedrock invocation-log records against a budget configuration, without AWS.

"Would these thresholds have caught last week's incident?" The file is streamed (JSON lines, optionally
gzip), each record priced, counted towards its scopes and windows, and the pure policy decides when each
level would have triggered. The same pure pieces the engine uses (parse, price, scopes, windows, policy,
downgrade) give the same answers; nothing is written anywhere.

What "saved" assumes: callers use `guardrail.client`, so from `lag` seconds after the triggering request
(invocation logs arrive 5 to 30 s late) calls at throttle go to the cheaper model and calls at shutdown are
refused. The ledger then sees the cheaper spend, which is why shutdown triggers later than it would on the
raw file. A shutdown lasts until on-call resets it, which a replay never does (unless the budget says
`shutdown_auto_clears`, then it clears at the next window).

Accepted lines: a ModelInvocationLog JSON record (S3 delivery of invocation logs), a CloudWatch Logs
event object `{"timestamp": ..., "message": "<record>"}` (`aws logs filter-log-events` output, one per
line), or `<timestamp> <record>` (CloudWatch Logs export to S3). Memory stays bounded: only counters of
the current windows and recent request ids (for de-duplication) and a reordering buffer are kept: records
up to REORDER_BUFFER apart in the file are replayed in time order; anything later is counted and warned about.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, BinaryIO

from guardrail.core import policy
from guardrail.core.config import Settings
from guardrail.core.downgrade import downgrade_model_id
from guardrail.core.models import ESCALATION_LEVELS, Budget, Flag, Level, ScopeTotals, UsageRecord, WindowRef, usd
from guardrail.core.pricing import Pricer
from guardrail.core.scopes import ScopeResolver
from guardrail.core.text import one_line
from guardrail.core.windows import window_for
from guardrail.service.sources import RecordParser
from guardrail.tools.replay_input import in_time_order, open_lines, parse_lines

DEFAULT_LAG_SECONDS = 30
DEDUPE_KEEP = timedelta(days=2)  # request ids older than this (behind the newest record) are forgotten


@dataclass(frozen=True, slots=True)
class Trigger:
    at: datetime
    scope: str
    from_level: Level
    to_level: Level
    spend: Decimal
    reason: str
    kind: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "scope": self.scope,
            "from_level": self.from_level.label,
            "to_level": self.to_level.label,
            "spend_usd": str(self.spend),
            "reason": self.reason,
            "trigger": self.kind,
        }


@dataclass
class _ScopeState:
    scope: str
    budget: Budget
    flag: Flag
    window: WindowRef | None = None
    spend: Decimal = Decimal(0)  # this window, as the ledger would have seen it (with the guardrail)
    in_force: list[tuple[datetime, Level, dict[str, str]]] = field(default_factory=list)

    def level_at(self, at: datetime) -> tuple[Level, dict[str, str]]:
        for effective, level, downgrades in reversed(self.in_force):
            if effective <= at:
                return level, downgrades
        return Level.NORMAL, {}


@dataclass
class ReplayReport:
    source: str
    lag_seconds: int
    budgets: list[Budget]
    records: int = 0
    lines: int = 0
    first_line: str = ""
    out_of_order: int = 0
    reorder_buffer: int = 0
    duplicates: int = 0
    late: int = 0
    quarantined: int = 0
    quarantine_examples: list[str] = field(default_factory=list)
    unknown_models: set[str] = field(default_factory=set)
    first_at: datetime | None = None
    last_at: datetime | None = None
    actual_usd: Decimal = Decimal(0)
    with_guardrail_usd: Decimal = Decimal(0)
    saved_by_throttle_usd: Decimal = Decimal(0)
    saved_by_shutdown_usd: Decimal = Decimal(0)
    downgraded_calls: int = 0
    refused_calls: int = 0
    triggers: list[Trigger] = field(default_factory=list)

    def first(self, level: Level, scope: str = "global") -> Trigger | None:
        return next((t for t in self.triggers if t.scope == scope and t.to_level >= level > t.from_level), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "lag_seconds": self.lag_seconds,
            "records": self.records,
            "out_of_order_records": self.out_of_order,
            "duplicates": self.duplicates,
            "late_records": self.late,
            "quarantined": self.quarantined,
            "quarantine_examples": self.quarantine_examples,
            "unknown_models": sorted(self.unknown_models),
            "first_at": self.first_at.isoformat() if self.first_at else None,
            "last_at": self.last_at.isoformat() if self.last_at else None,
            "actual_usd": str(self.actual_usd),
            "with_guardrail_usd": str(self.with_guardrail_usd),
            "saved_usd": str(self.saved_by_throttle_usd + self.saved_by_shutdown_usd),
            "saved_by_throttle_usd": str(self.saved_by_throttle_usd),
            "saved_by_shutdown_usd": str(self.saved_by_shutdown_usd),
            "downgraded_calls": self.downgraded_calls,
            "refused_calls": self.refused_calls,
            "triggers": [t.to_dict() for t in self.triggers],
        }


# -- the replay ----------------------------------------------------------------------------------------


class Replayer:
    """Streams records through the pure pipeline and keeps only current-window state."""

    def __init__(self, settings: Settings, *, lag_seconds: int = DEFAULT_LAG_SECONDS, source: str = "-") -> None:
        self.settings = settings
        self.zone = settings.zone
        self.budgets = settings.budget_list()
        self.resolver = ScopeResolver(self.budgets)
        # No Bedrock client: application inference profile ARNs are priced at the ceiling (and reported).
        self.pricer = Pricer(overrides=settings.price_overrides, ceiling=settings.ceiling_rate)
        self.parser = RecordParser(settings.max_tokens_per_request)
        self.lag = timedelta(seconds=lag_seconds)
        self.report = ReplayReport(source=source, lag_seconds=lag_seconds, budgets=self.budgets)
        self.scopes: dict[str, _ScopeState] = {}
        self._seen: dict[str, datetime] = {}
        self._seen_horizon: datetime | None = None
        self._downgrades: dict[tuple[str, tuple[tuple[str, str], ...]], str | None] = {}

    def run(self, lines: Iterable[tuple[int, str]]) -> ReplayReport:
        for record in in_time_order(parse_lines(lines, self.parser, self.report), self.report):
            self.add(record)
        return self.report

    def _duplicate(self, record: UsageRecord) -> bool:
        rid = record.request_id
        if rid in self._seen:
            return True
        self._seen[rid] = record.timestamp
        newest = self.report.last_at
        if newest is not None and len(self._seen) > 50_000:
            horizon = newest - DEDUPE_KEEP
            if self._seen_horizon is None or horizon > self._seen_horizon + timedelta(hours=1):
                self._seen = {k: v for k, v in self._seen.items() if v >= horizon}
                self._seen_horizon = horizon
        return False

    def _cheaper(self, model_id: str, downgrades: dict[str, str]) -> str | None:
        key = (model_id, tuple(sorted(downgrades.items())))
        if key not in self._downgrades:
            self._downgrades[key] = downgrade_model_id(model_id, downgrades)
        return self._downgrades[key]

    def _state(self, scope: str, budget: Budget) -> _ScopeState:
        state = self.scopes.get(scope)
        if state is None:
            state = self.scopes[scope] = _ScopeState(scope=scope, budget=budget, flag=Flag(scope=scope))
        return state

    def add(self, record: UsageRecord) -> None:
        report = self.report
        if self._duplicate(record):
            report.duplicates += 1
            return
        report.records += 1
        at = record.timestamp
        report.first_at = at if report.first_at is None or at < report.first_at else report.first_at
        report.last_at = at if report.last_at is None or at > report.last_at else report.last_at
        price = self.pricer.price(record)
        if price.at_ceiling:
            report.unknown_models.add(record.model_id)
        report.actual_usd += price.cost
        states = [self._state(scope, budget) for scope, budget in self.resolver.scopes_for(record)]

        # What the guardrail would have done to this call: the highest level in force over its scopes.
        level, downgrades = Level.NORMAL, {}
        for state in states:
            lvl, dg = state.level_at(at)
            if lvl > level:
                level, downgrades = lvl, dg
        cost = price.cost
        if level == Level.SHUTDOWN:
            report.refused_calls += 1
            report.saved_by_shutdown_usd += price.cost
            return  # refused: never happened, never counted
        if level == Level.THROTTLE and downgrades:
            cheaper = self._cheaper(record.model_id, downgrades)
            if cheaper is not None:
                cost = self.pricer.price(replace(record, model_id=cheaper)).cost
                report.downgraded_calls += 1
                report.saved_by_throttle_usd += price.cost - cost
        report.with_guardrail_usd += cost

        for state in states:
            window = window_for(at, state.budget.window, self.zone)
            if state.window is None or window.start > state.window.start:
                state.window, state.spend = window, Decimal(0)
            elif window.start < state.window.start:
                report.late += 1  # a closed window: counted, but it cannot escalate any more
                continue
            state.spend += cost
            self._evaluate(state, at)

    def _evaluate(self, state: _ScopeState, at: datetime) -> None:
        assert state.window is not None
        totals = ScopeTotals(scope=state.scope, window=state.window, spend=state.spend)
        transition = policy.evaluate(state.flag, state.budget, totals, at)
        if transition is None:
            return
        state.flag = policy.apply(state.flag, transition, state.budget, at)
        effective = at + self.lag
        state.in_force.append((effective, state.flag.level, dict(state.flag.model_downgrades)))
        # Only the latest entries matter once their time has passed: keep the list short.
        del state.in_force[:-4]
        self.report.triggers.append(
            Trigger(
                at=at,
                scope=state.scope,
                from_level=transition.from_level,
                to_level=transition.to_level,
                spend=state.spend,
                reason=transition.reason,
                kind=transition.trigger,
            )
        )


def replay(
    path: str | Path, settings: Settings, *, lag_seconds: int = DEFAULT_LAG_SECONDS, stdin: BinaryIO | None = None
) -> ReplayReport:
    return Replayer(settings, lag_seconds=lag_seconds, source=str(path)).run(open_lines(path, stdin))


# -- rendering -------------------------------------------------------------------------------------


def _t(at: datetime | None, zone: Any) -> str:
    return at.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S") if at else "-"


def render(report: ReplayReport, settings: Settings) -> str:
    zone = settings.zone
    out = [
        f"Replayed {report.records:,} records from {report.source} "
        f"({_t(report.first_at, zone)} -> {_t(report.last_at, zone)} {settings.timezone}); "
        f"{report.duplicates} duplicates dropped, {report.quarantined} lines quarantined"
    ]
    for example in report.quarantine_examples:
        out.append(f"  quarantined: {example}")
    if report.quarantined > len(report.quarantine_examples):
        out.append(f"  quarantined: ... and {report.quarantined - len(report.quarantine_examples):,} more")
    if report.out_of_order:
        out.append(
            f"  warning: {report.out_of_order:,} records came more than {report.reorder_buffer:,} records out of time "
            "order and were replayed late; sort the file by time for exact trigger times"
        )
    if report.unknown_models:
        out.append(f"  unknown models priced at the ceiling rate: {', '.join(sorted(report.unknown_models))}")
    for b in report.budgets:
        levels = ", ".join(f"{lvl.label} {usd(b.thresholds.for_level(lvl))}" for lvl in ESCALATION_LEVELS)
        out.append(f"Budget {b.selector}: per {b.window} ({settings.timezone}): {levels}")
    out.append(
        f"Effects assumed {report.lag_seconds} s after the triggering request "
        "(--lag); callers use guardrail.client; no reset during the replay."
    )
    out.append("")
    if not report.triggers:
        out.append("No level would have triggered.")
    else:
        rows = [["WHEN", "SCOPE", "LEVEL", "SPEND", "WHY"]]
        for t in report.triggers:
            rows.append(
                [
                    _t(t.at, zone),
                    t.scope,
                    f"{t.from_level.label} -> {t.to_level.label}",
                    usd(t.spend),
                    t.reason,
                ]
            )
        rows = [[one_line(c) for c in r] for r in rows]  # scopes and reasons come from the file
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        for r in rows:
            out.append("  ".join(c.ljust(w) for c, w in zip(r[:4], widths, strict=True)) + "  " + r[4])
    saved = report.saved_by_throttle_usd + report.saved_by_shutdown_usd
    out += [
        "",
        f"Spend as it happened:      {usd(report.actual_usd)}",
        f"Spend with the guardrail:  {usd(report.with_guardrail_usd)}",
        f"Saved:                     {usd(saved)}"
        + (f" ({saved / report.actual_usd:.0%})" if report.actual_usd else ""),
        f"  by throttle:             {usd(report.saved_by_throttle_usd)} "
        f"({report.downgraded_calls:,} calls switched to the cheaper model)",
        f"  by shutdown:             {usd(report.saved_by_shutdown_usd)} ({report.refused_calls:,} calls refused)",
    ]
    return "\n".join(one_line(line) for line in out)  # outside text never adds a row or an escape
