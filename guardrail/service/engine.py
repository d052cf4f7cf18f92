"""The engine: the one path every entry point (handlers, CLI, demo) takes.

records -> price -> ledger (exactly once) -> consistent totals -> policy -> conditional flag transition
(+ audit). It returns the transitions this caller won, so whoever called can apply their effects.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

from guardrail.core import policy
from guardrail.core.config import target_name
from guardrail.core.errors import FlagConflict, GuardrailError, ResetRefused, ScopeNotFound
from guardrail.core.models import (
    RATE_WINDOW,
    AuditEntry,
    Budget,
    CounterKey,
    FailedRequest,
    Flag,
    Level,
    PricedRecord,
    QuarantinedRecord,
    ScopeTotals,
    TargetHold,
    Transition,
    UsageRecord,
    WindowRef,
)
from guardrail.core.pricing import Pricer
from guardrail.core.scopes import ScopeResolver
from guardrail.core.windows import (
    BUCKET_SECONDS,
    BURN_BUCKETS,
    SLICE_SECONDS,
    bucket_cutoff,
    window_at,
    window_for,
)
from guardrail.service.sources import RecordParser
from guardrail.store.copies import AUTHORITATIVE
from guardrail.store.counters import totals_from_items
from guardrail.store.flags import FlagStore
from guardrail.store.ledger import Ledger, LedgerEntry
from guardrail.store.table import batch_get, counter_key, target_key
from guardrail.store.targets import hold_from_item

if TYPE_CHECKING:
    from mypy_boto3_bedrock import BedrockClient
    from mypy_boto3_dynamodb import DynamoDBClient

    from guardrail.core.config import Settings

MAX_DECIDE_ATTEMPTS = 8
# Target items by canonical name (None: no item); effects record the holds they take in it.
TargetItems = dict[str, TargetHold | None]


@dataclass(frozen=True, slots=True)
class Committed:
    """A transition this caller won: the flag before and after, and its audit entry."""

    transition: Transition
    before: Flag
    after: Flag
    audit: AuditEntry
    totals: ScopeTotals
    budget: Budget
    # The budget's target items as read with the counters (None: not read), so a shutdown need not read them.
    targets: TargetItems | None = None


class EffectsApplier(Protocol):
    def apply(self, committed: Committed) -> Flag: ...


@dataclass
class IngestResult:
    recorded: list[PricedRecord] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    corrected: list[str] = field(default_factory=list)  # a better copy replaced the one the ledger held
    superseded: list[str] = field(default_factory=list)  # copies in this batch that lost to a better one
    quarantined: list[QuarantinedRecord] = field(default_factory=list)
    unknown_models: set[str] = field(default_factory=set)
    failed: list[FailedRequest] = field(default_factory=list)  # errorCode records: $0, not quarantined
    not_token_priced: dict[str, int] = field(default_factory=dict)  # model -> requests billed otherwise ($0 here)
    totals: dict[str, ScopeTotals] = field(default_factory=dict)
    transitions: list[Committed] = field(default_factory=list)
    write_calls: int = 0


@dataclass(frozen=True, slots=True)
class ScopeStatus:
    scope: str
    budget: Budget
    totals: ScopeTotals
    flag: Flag


class Engine:
    def __init__(
        self,
        settings: Settings,
        *,
        dynamodb: DynamoDBClient,
        bedrock_factory: Callable[[], BedrockClient] | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        effects: EffectsApplier | None = None,
        ledger: Ledger | None = None,
        flags: FlagStore | None = None,
    ) -> None:
        """`now` is the one clock of the engine, its ledger and its flags; `effects` applies every transition
        this engine wins (None: transitions are committed and returned, nothing else happens)."""
        self.settings = settings
        self.now = now
        self.zone = settings.zone
        self.resolver = ScopeResolver(settings.budget_list())
        self.pricer = Pricer(
            overrides=settings.price_overrides, ceiling=settings.ceiling_rate, bedrock_factory=bedrock_factory
        )
        self.parser = RecordParser(settings.max_tokens_per_request)
        self.ledger = ledger or Ledger(
            dynamodb, settings.table_name, request_ttl_days=settings.request_ttl_days, now=now
        )
        self.flags = flags or FlagStore(dynamodb, settings.table_name, now=now, dry_run=settings.dry_run)
        self.effects = effects
        self.max_snooze = timedelta(hours=float(settings.max_snooze_hours))
        self.max_skew = timedelta(seconds=settings.max_clock_skew_seconds)
        # How far back a 5-minute bucket may still be read (guardrail.core.windows): the burn rate's, and for
        # a client copy (unconfirmed spend) the confirmation grace period's too.
        self.log_look_back = timedelta(seconds=BURN_BUCKETS * BUCKET_SECONDS)
        self.copy_look_back = max(self.log_look_back, timedelta(minutes=settings.unconfirmed_after_minutes))

    # -- spend -----------------------------------------------------------------------------------

    def entries(self, records: Iterable[UsageRecord]) -> tuple[list[LedgerEntry], set[str]]:
        """Price each record and name the counters it adds to (pure compute, no I/O): a budget window per
        scope, and its 5-minute bucket unless that bucket is too old to be read again."""
        out: list[LedgerEntry] = []
        unknown: set[str] = set()
        price = self.pricer.price
        zone = self.zone
        now = self.now()
        log_cutoff = bucket_cutoff(now, self.log_look_back)
        copy_cutoff = bucket_cutoff(now, self.copy_look_back)
        windows: dict[tuple[int, str], WindowRef] = {}
        for record in records:
            priced = PricedRecord(record, price(record))
            if priced.price.at_ceiling:
                unknown.add(record.model_id)
            epoch = int(record.timestamp.timestamp())
            cutoff = log_cutoff if record.source == AUTHORITATIVE else copy_cutoff
            bucket_end = epoch - epoch % BUCKET_SECONDS + BUCKET_SECONDS
            rate = window_at(epoch, RATE_WINDOW, zone) if bucket_end > cutoff else None
            counters: list[CounterKey] = []
            slice_start = epoch - epoch % SLICE_SECONDS  # every budget window is the same within a slice
            for scope, budget in self.resolver.scopes_for(record):
                window = windows.get((slice_start, budget.window))
                if window is None:
                    window = windows[slice_start, budget.window] = window_at(epoch, budget.window, zone)
                counters.append((scope, window))
                if rate is not None:
                    counters.append((scope, rate))
            out.append(LedgerEntry(priced, tuple(counters)))
        return out, unknown

    def ingest_events(self, events: Iterable[Mapping[str, Any]]) -> IngestResult:
        parsed = self.parser.events(events)
        result = self.ingest(parsed.records, parsed.quarantined)
        result.failed = parsed.failed
        return result

    def ingest(self, records: Sequence[UsageRecord], quarantined: Sequence[QuarantinedRecord] = ()) -> IngestResult:
        records, future = self._split_future(records)
        quarantined = [*quarantined, *future]
        result = IngestResult(quarantined=quarantined)
        if quarantined:
            self.ledger.quarantine(quarantined)
        entries, result.unknown_models = self.entries(records)
        outcome = self.ledger.record(entries)
        result.recorded = [e.priced for e in outcome.recorded]
        for priced in result.recorded:
            if priced.price.billing != "token":
                model = priced.record.model_id
                result.not_token_priced[model] = result.not_token_priced.get(model, 0) + 1
        result.duplicates = outcome.duplicates
        result.corrected = list(outcome.corrected)
        result.superseded = outcome.superseded
        result.write_calls = outcome.write_calls
        # Evaluate every touched counter of a current window (late records of a closed window count
        # in the ledger but cannot escalate a window that is over). Duplicates' counters too: a
        # redelivered batch (the Lambda retry of an invocation that failed after its ledger write) must
        # still make the transition the failed attempt never committed.
        dupes = set(outcome.duplicates)
        touched = outcome.touched | {c for e in entries if e.priced.record.request_id in dupes for c in e.counters}
        current = self._current_keys(touched)
        totals, flags, targets = self._read(current)
        result.totals = {scope: t for (scope, _), t in totals.items()}
        result.transitions = self._evaluate(totals, flags, targets)
        return result

    def _split_future(self, records: Sequence[UsageRecord]) -> tuple[list[UsageRecord], list[QuarantinedRecord]]:
        """Records stamped further ahead of the clock than the allowed skew cannot be trusted to pick a
        window: they are kept in quarantine with the reason, never counted in a future window."""
        now = self.now()
        limit = now + self.max_skew
        kept: list[UsageRecord] = []
        future: list[QuarantinedRecord] = []
        for record in records:
            if record.timestamp <= limit:
                kept.append(record)
                continue
            reason = (
                f"timestamp {record.timestamp.isoformat()} is more than {self.max_skew.total_seconds():g} s ahead of "
                f"the clock ({now.isoformat()}; GUARDRAIL_MAX_CLOCK_SKEW_SECONDS)"
            )
            raw = json.dumps(asdict(record), default=str, ensure_ascii=False)
            future.append(QuarantinedRecord(reason=reason, raw=raw, source=record.source, received_at=now))
        return kept, future

    def _read(self, keys: Sequence[CounterKey]) -> tuple[dict[CounterKey, ScopeTotals], dict[str, Flag], TargetItems]:
        """Counters, the flags of their scopes and their budgets' target items in one consistent BatchGetItem
        (a shutdown then takes its holds without reading them again: docs/enforcement.md)."""
        if not keys:
            return {}, {}, {}
        scopes = list(dict.fromkeys(scope for scope, _ in keys))
        names = list(
            dict.fromkeys(target_name(t) for s in scopes if (b := self.resolver.budget_for(s)) for t in b.targets)
        )
        items = batch_get(
            self.ledger.client,
            self.ledger.table,
            [counter_key(k) for k in keys] + [self.flags.key(s) for s in scopes] + [target_key(n) for n in names],
        )
        found = {n: hold_from_item(i) if (i := items.get(target_key(n))) else None for n in names}
        return totals_from_items(keys, items), self.flags.from_items(scopes, items), found

    def _current_keys(self, keys: Iterable[CounterKey]) -> list[CounterKey]:
        now = self.now()
        # Only the clock picks the current window: a record of a later window counts there, but never
        # moves the scope's level now (that would look like a rollover).
        return [(s, w) for s, w in keys if w.kind != RATE_WINDOW and w.start <= now < w.end]

    def _evaluate(
        self, totals: Mapping[CounterKey, ScopeTotals], flags: Mapping[str, Flag], targets: TargetItems
    ) -> list[Committed]:
        won: list[Committed] = []
        for (scope, _), scope_totals in totals.items():
            budget = self.resolver.budget_for(scope)
            if budget is None:
                continue
            decide = partial(self._evaluate_one, budget=budget, totals=scope_totals)
            won.extend(
                self._decide_and_commit(flags[scope], decide, budget, scope_totals, actor="guardrail", targets=targets)
            )
        return won

    def _evaluate_one(self, flag: Flag, *, budget: Budget, totals: ScopeTotals) -> Transition | None:
        return policy.evaluate(flag, budget, totals, self.now())

    def _decide_and_commit(
        self,
        flag: Flag,
        decide: Callable[[Flag], Transition | None],
        budget: Budget,
        totals: ScopeTotals,
        *,
        actor: str,
        targets: TargetItems | None = None,
    ) -> list[Committed]:
        """Decide on the freshest flag and commit; on a lost race re-read and decide again."""
        for _ in range(MAX_DECIDE_ATTEMPTS):
            transition = decide(flag)
            if transition is None:
                return []
            after = policy.apply(flag, transition, budget, self.now())
            try:
                audit = self.flags.transition(flag, after, transition, actor=actor)
            except FlagConflict:
                flag = self.flags.get(flag.scope)
                continue
            committed = Committed(transition, flag, after, audit, totals, budget, targets)
            if self.effects is not None:
                self.effects.apply(committed)
            return [committed]
        raise GuardrailError(f"flag {flag.scope!r} kept changing under us; the next event will retry")

    def current_window(self, budget: Budget) -> WindowRef:
        return window_for(self.now(), budget.window, self.zone)

    def budget(self, scope: str) -> Budget:
        """The budget that governs `scope` (raises ScopeNotFound when none does)."""
        budget = self.resolver.budget_for(scope)
        if budget is None:
            known = ", ".join(b.selector for b in self.resolver.budgets)
            raise ScopeNotFound(f"no budget governs scope {scope!r} (configured: {known})")
        return budget

    def scope_totals(self, scope: str) -> ScopeTotals:
        window = self.current_window(self.budget(scope))
        return self.ledger.totals([(scope, window)])[(scope, window)]

    def complete_open_batches(self, older_than: timedelta) -> tuple[list[str], list[Committed]]:
        """Ledger batches whose writer stopped between claiming and applying (guardrail.store.batches):
        applied now, exactly once, and what they add to evaluated like new spend."""
        done, touched = self.ledger.batches.sweep(older_than)
        if not touched:
            return done, []
        return done, self._evaluate(*self._read(self._current_keys(touched)))

    def evaluate_scope(self, scope: str) -> list[Committed]:
        """Re-evaluate one scope now (schedule: window rollover, snooze expiry)."""
        budget = self.budget(scope)
        window = self.current_window(budget)
        return self._evaluate(*self._read([(scope, window)]))

    # -- alarms and on-call ----------------------------------------------------------------------

    def alarm(self, *, alarm: str, state: policy.AlarmState, level: Level, scope: str = "global") -> list[Committed]:
        budget = self.budget(scope)
        totals = self.scope_totals(scope)
        return self._decide_and_commit(
            self.flags.get(scope),
            lambda f: policy.on_alarm(f, budget, totals, self.now(), alarm=alarm, state=state, level=level),
            budget,
            totals,
            actor=f"alarm:{alarm}",
        )

    def reset(
        self,
        *,
        scope: str,
        actor: str,
        reason: str,
        snooze_until: datetime | None = None,
        rearm_from_zero: bool = False,
    ) -> Committed:
        if not reason or not reason.strip():
            raise GuardrailError("a reset needs a reason; it goes into the audit trail")
        refusal = policy.snooze_refusal(snooze_until, self.now(), self.max_snooze)
        if refusal:
            raise ResetRefused(refusal)
        budget = self.budget(scope)
        totals = self.scope_totals(scope)
        committed = self._decide_and_commit(
            self.flags.get(scope),
            lambda f: policy.on_reset(
                f, totals, reason=reason.strip(), snooze_until=snooze_until, rearm_from_zero=rearm_from_zero
            ),
            budget,
            totals,
            actor=actor,
        )
        return committed[0]

    def status(self) -> list[ScopeStatus]:
        """Every scope with a flag or a configured exact budget, with its current window's totals."""
        flags = {f.scope: f for f in self.flags.list_all()}
        scopes = list(flags)
        scopes += [
            b.selector for b in self.resolver.budgets if not b.selector.endswith(":*") and b.selector not in flags
        ]
        keys: list[CounterKey] = []
        for scope in scopes:
            scope_budget = self.resolver.budget_for(scope)
            if scope_budget is not None:
                keys.append((scope, self.current_window(scope_budget)))
        totals = self.ledger.totals(keys)
        return [
            ScopeStatus(
                scope=scope,
                budget=self.budget(scope),
                totals=totals[(scope, window)],
                flag=flags.get(scope, Flag(scope=scope)),
            )
            for scope, window in keys
        ]
