"""Effects: turn a won transition into reversible changes in the world, then tell people.

Order (DESIGN.md section 6): enforcement first, notification last, so a failing SNS or Slack never
blocks or undoes a shutdown. Shutdown holds each target in its shared target item (state saved once per
target, see holds.py) and names it in the flag before setting 0; restore releases the hold, and the last
holder puts back exactly what was saved ("none" -> DeleteFunctionConcurrency). Every step is idempotent,
so the schedule handler can finish a half-applied transition.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from guardrail.core.config import function_name, is_role, target_name
from guardrail.core.errors import FlagConflict
from guardrail.core.models import Budget, Flag, Level, TargetHold, TargetState, WindowRef
from guardrail.service.holds import MAX_ATTEMPTS, Holds, Outcome, Refused, Take
from guardrail.service.messages import Burn, alert_message
from guardrail.service.notify import AlertMessage, Notifier
from guardrail.service.role_deny import RoleDeny
from guardrail.service.target_kinds import Targets
from guardrail.service.targets import Concurrency, aws_error
from guardrail.store.aws_clients import client
from guardrail.store.breakdown import Leaders
from guardrail.store.flags import FlagStore, ItemConflict
from guardrail.store.table import alerted_key, item_key
from guardrail.store.targets import TargetStore

if TYPE_CHECKING:
    from mypy_boto3_lambda import LambdaClient

    from guardrail.service.engine import Committed

ACTOR = "guardrail"
# A shutdown is applied when every target is stopped, does not exist, or was refused (each said once).
DONE = ("applied", "missing", "refused")
UNTOUCHED = ("missing", "refused")  # never stopped, so never restored
MAX_TRANSACTION_ITEMS = 100  # DynamoDB's limit per TransactWriteItems


def _held_by(item: TargetHold | None, take: Take, scope: str) -> TargetHold:
    """The target item as our committed take or join left it (for the next scope of the same batch)."""
    if item is not None and item.state == "held":
        return replace(item, holders=item.holders | {scope}, rev=item.rev + 1)
    rev = (item.rev if item is not None else 0) + 1
    return TargetHold(function=take.name, saved=take.saved, holders=frozenset({scope}), rev=rev)


class _Retry(Exception):
    """Some holds taken one by one found their item changed: plan again."""


@dataclass
class EffectReport:
    """What one application of effects did; handlers turn it into metrics and their response."""

    scope: str
    level: Level
    actions: list[str] = field(default_factory=list)
    applied: int = 0
    failures: list[str] = field(default_factory=list)
    notification_failures: list[str] = field(default_factory=list)


class Effects:
    def __init__(
        self,
        flags: FlagStore,
        *,
        lambda_factory: Callable[[], LambdaClient],
        notifier: Notifier | None,
        dry_run: bool = False,
        own_functions: tuple[str, ...] = (),
        burn_rate: Callable[[str], Burn] | None = None,
        on_report: Callable[[EffectReport], None] | None = None,
        targets: TargetStore | None = None,
        leaders: Callable[[str, WindowRef], dict[str, Leaders]] | None = None,
        iam_factory: Callable[[], Any] | None = None,
    ) -> None:
        self.flags = flags
        self.concurrency = Concurrency(lambda_factory)
        self.targets = Targets(self.concurrency, RoleDeny(iam_factory or (lambda: client("iam"))))
        self.holds = Holds(self.targets, targets or TargetStore(flags.client, flags.table, now=flags.now))
        self.notifier = notifier
        self.dry_run = dry_run
        own = {function_name(f) for f in own_functions}
        if os.environ.get("AWS_LAMBDA_FUNCTION_NAME"):
            own.add(os.environ["AWS_LAMBDA_FUNCTION_NAME"])
        self.own = own
        self.burn_rate = burn_rate
        self.leaders = leaders
        self.on_report = on_report
        self.reports: list[EffectReport] = []

    @property
    def lambda_client(self) -> LambdaClient:
        return self.concurrency.client

    # -- the entry point the engine calls ---------------------------------------------------------

    def apply(self, committed: Committed) -> Flag:
        t = committed.transition
        report = EffectReport(scope=t.scope, level=t.to_level)
        flag = committed.after
        try:
            if t.to_level == Level.SHUTDOWN and t.from_level < Level.SHUTDOWN:
                # Marked applied only after the alert went out: a crash before it leaves the flag
                # unapplied, and the schedule run finishes the shutdown and sends the alert.
                flag = self.shutdown(flag, committed.budget, report, mark_applied=False, items=committed.targets)
            elif (t.from_level == Level.SHUTDOWN and t.to_level < Level.SHUTDOWN) or (
                t.trigger == "reset" and flag.targets
            ):
                # A reset of a scope that is already normal retries the restores AWS refused before.
                flag = self.restore(flag, report, mark_applied=flag.applied)
        except FlagConflict as exc:
            # Someone moved the flag while we worked (e.g. a reset): their transition owns it now.
            report.failures.append(f"flag changed during effects: {exc}; the schedule run will reconcile")
        if t.to_level >= Level.THROTTLE and t.from_level < Level.THROTTLE and flag.model_downgrades:
            pairs = ", ".join(f"{a} -> {b}" for a, b in flag.model_downgrades.items())
            report.actions.append(f"model downgrades in force: {pairs}")
        if t.from_level >= Level.THROTTLE and t.to_level < Level.THROTTLE:
            report.actions.append("model downgrades lifted")
        self._notify(committed, flag, report)
        # Applied (effects done and notice sent) only now: a crash before this leaves the flag unapplied,
        # and the schedule run finishes the effects and sends the notice (at least once, see
        # docs/enforcement.md). A shutdown with a target not at 0 yet stays unapplied for its repair.
        done = flag.level < Level.SHUTDOWN or all(s.status in DONE for s in flag.targets.values())
        if not flag.applied and done:
            try:
                flag = self._mark_applied(flag)
            except FlagConflict as exc:
                report.failures.append(f"flag changed during effects: {exc}; the schedule run will reconcile")
        self._done(report)
        return flag

    def _done(self, report: EffectReport) -> None:
        self.reports.append(report)
        if self.on_report is not None:
            self.on_report(report)

    # -- shutdown and restore ---------------------------------------------------------------------

    def targets_of(self, budget: Budget) -> list[str]:
        """The budget's targets by canonical name (one target item and one hold per function or role,
        whatever form the configuration used), never the guardrail's own functions."""
        names = dict.fromkeys(target_name(t) for t in budget.targets)
        return [t for t in names if t not in self.own]

    def _own(self, target: str) -> bool:
        return not is_role(target) and function_name(target) in self.own

    def shutdown(
        self,
        flag: Flag,
        budget: Budget,
        report: EffectReport,
        *,
        mark_applied: bool = True,
        items: dict[str, TargetHold | None] | None = None,
    ) -> Flag:
        targets = self.targets_of(budget)
        skipped = [t for t in budget.targets if self._own(t)]
        if skipped:
            report.failures.append(f"refused to stop the guardrail's own functions: {', '.join(skipped)}")
        if self.dry_run:
            for name in targets:
                kind = self.targets.kind(name)
                current = kind.read(name)
                if not current.readable:
                    report.failures.append(f"{name}: could not read {kind.noun}: {current.error}")
                report.actions.append(f"set {kind.stop_text(name)} (now {current.describe()})")
            return self._mark_applied(flag)
        # 1 and 2. Hold each target in its shared target item (its state is saved there once, by the first
        # holder) and name it in the flag, in one transaction, before anything is touched: a crash after
        # this is repaired from the flag, and a flag that moved meanwhile leaves no hold behind.
        wanted = [name for name in targets if name not in flag.targets]
        if wanted:
            flag = self._take_holds(flag, wanted, report, items)
        # 3. Set 0, then mark applied.
        return self.enforce_zero(flag, report, mark_applied=mark_applied)

    def _take_holds(
        self, flag: Flag, wanted: list[str], report: EffectReport, items: dict[str, TargetHold | None] | None
    ) -> Flag:
        """Hold `wanted` for the flag's scope and record them in the flag: one TransactWriteItems (the flag,
        its audit entry and every target item, each conditional on being as read). `items`: the target items
        as read already (the engine's batch read, shared by every scope of the batch: updated with the holds
        taken here), else they are read here in one BatchGetItem."""
        store = self.holds.store
        known = dict(items or {})
        fresh = {name for name in wanted if name not in known}
        if fresh:
            known |= store.get_many(list(fresh))
        for _ in range(MAX_ATTEMPTS):
            out = Outcome()
            held = dict(flag.targets)
            takes: list[Take] = []
            for name in wanted:
                plan = self.holds.plan(name, flag.scope, known[name], out)
                if isinstance(plan, Refused):
                    held[name] = TargetState(saved=None, status=plan.status, message=plan.message)
                    if plan.status == "missing":
                        out.failures.append(
                            f"{name} does not exist ({plan.message}); nothing to stop. Said once for this shutdown"
                        )
                    else:
                        out.failures.append(f"{name}: {plan.message}. Said once for this shutdown")
                elif plan is not None:
                    held[name] = TargetState(saved=plan.saved, status="saved")
                    takes.append(plan)
            # A refusal is no conditional write: it is decided on the item as it is now, not as read before
            # another scope of this batch took the target (its stop would look like someone else's deny).
            stale = [n for n, st in held.items() if st.status == "refused" and n in wanted and n not in fresh]
            if stale:
                known |= store.get_many(stale)
                fresh.update(stale)
                continue
            if held == flag.targets:
                break
            try:
                if len(takes) + 2 > MAX_TRANSACTION_ITEMS:
                    flag = self._take_one_by_one(flag, takes, held, known, report)
                else:
                    flag = self.flags.update(
                        flag,
                        actor=ACTOR,
                        action="shutdown:saved",
                        reason="saved reserved concurrency",
                        targets=held,
                        extra=[{"Update": take.request} for take in takes],
                    )
                if items is not None:
                    items.update({take.name: _held_by(known[take.name], take, flag.scope) for take in takes})
                break
            except ItemConflict as exc:
                # A target item changed since it was read (another scope took or released it): read those again.
                changed = [takes[i].name for i in exc.failed]
                known |= store.get_many(changed)
                fresh.update(changed)
            except _Retry:
                continue
        else:
            out.failures.append("target items kept changing; the schedule run will retry")
        report.actions += out.actions
        report.failures += out.failures
        return flag

    def _take_one_by_one(
        self,
        flag: Flag,
        takes: list[Take],
        held: dict[str, TargetState],
        known: dict[str, TargetHold | None],
        report: EffectReport,
    ) -> Flag:
        """More targets than one transaction holds: each hold on its own, then the flag (the order the
        schedule run repairs from: a hold without a flag entry is released when its scope is not shut down)."""
        changed = []
        for take in takes:
            if self.holds.store.apply(take.name, take.request) is None:
                changed.append(take.name)
        if changed:
            known |= self.holds.store.get_many([take.name for take in takes])  # ours are joined next time
            raise _Retry
        try:
            return self.flags.update(
                flag, actor=ACTOR, action="shutdown:saved", reason="saved reserved concurrency", targets=held
            )
        except FlagConflict:
            self._drop_orphans(flag.scope, [take.name for take in takes], report)
            raise

    def _drop_orphans(self, scope: str, names: list[str], report: EffectReport) -> None:
        """Holds taken for a flag that moved meanwhile: give them back unless the scope still shuts down
        (the schedule run would find them too)."""
        if self.flags.get(scope).level == Level.SHUTDOWN:
            return
        out = Outcome()
        for name in names:
            self.holds.release(name, scope, None, out)
        report.actions += out.actions
        report.failures += out.failures

    def enforce_zero(self, flag: Flag, report: EffectReport, *, mark_applied: bool = True) -> Flag:
        """Set 0 on every held target (also the schedule's drift repair), then read their target items back
        in one BatchGetItem: a stop a reset released meanwhile is undone (Holds.settle)."""
        targets = dict(flag.targets)
        out = Outcome()
        stopped: list[str] = []
        for name, state in flag.targets.items():
            if state.status in UNTOUCHED:
                continue
            kind = self.targets.kind(name)
            try:
                kind.stop(name)
            except Exception as exc:
                report.failures.append(f"{name}: could not set {kind.stop_text(name)}: {aws_error(exc)}")
                continue
            stopped.append(name)
        items = self.holds.store.get_many(stopped) if stopped else {}
        for name in stopped:
            state = flag.targets[name]
            kind = self.targets.kind(name)
            if not self.holds.settle(name, flag.scope, state.saved, items[name], out):
                targets.pop(name)
                continue
            targets[name] = replace(state, status="applied", message="")
            report.applied += 1
            report.actions.append(f"{kind.stop_text(name)} (was {kind.describe_saved(state.saved)})")
        report.actions += out.actions
        report.failures += out.failures
        ok = all(s.status in DONE for s in targets.values())
        applied = ok and mark_applied
        if targets != flag.targets or flag.applied != applied:
            flag = self.flags.update(
                flag,
                actor=ACTOR,
                action="shutdown:applied" if ok else "shutdown:partial",
                reason="targets stopped",
                targets=targets,
                applied=applied,
            )
        return flag

    def restore(self, flag: Flag, report: EffectReport, *, mark_applied: bool = True) -> Flag:
        if self.dry_run:
            for name, state in flag.targets.items():
                report.actions.append(f"restore {name} to {self.targets.kind(name).describe_saved(state.saved)}")
            return self._mark_applied(flag)
        remaining: dict[str, TargetState] = {}
        out = Outcome()
        for name, state in flag.targets.items():
            if state.status == "missing":
                out.actions.append(f"{name} did not exist at shutdown: nothing to restore")
                continue
            if state.status == "refused":
                out.actions.append(f"{name} was refused at shutdown (never denied): nothing to restore")
                continue
            released = self.holds.release(name, flag.scope, state.saved, out)
            if released.result == "failed":
                remaining[name] = replace(state, status="restore_failed", message=released.message)
            elif released.result == "restored":
                report.applied += 1
        report.actions += out.actions
        report.failures += out.failures
        return self.flags.update(
            flag,
            actor=ACTOR,
            action="restore:applied" if not remaining else "restore:partial",
            reason="restored targets" if not remaining else "some targets could not be restored",
            targets=remaining,
            applied=mark_applied,
        )

    def mark_applied(self, flag: Flag) -> Flag:
        return self._mark_applied(flag)

    def _mark_applied(self, flag: Flag) -> Flag:
        if flag.applied:
            return flag
        return self.flags.update(flag, actor=ACTOR, action="applied", reason="effects applied", applied=True)

    # -- unknown models ---------------------------------------------------------------------------

    def alert_unknown_models(self, models: set[str], day: str) -> list[str]:
        """Tell on-call once per model per day (across all invocations) that a model was priced at the
        ceiling rate. Returns the models alerted now."""
        if not models or self.notifier is None:
            return []
        fresh = []
        for model in sorted(models):
            try:
                self.flags.client.put_item(
                    TableName=self.flags.table,
                    Item={
                        **item_key(alerted_key("unknown-model", day, model)),
                        "expires_at": {"N": str(int(self.flags.now().timestamp()) + 3 * 86400)},
                    },
                    ConditionExpression="attribute_not_exists(pk)",
                )
            except self.flags.client.exceptions.ConditionalCheckFailedException:
                continue  # already alerted today
            fresh.append(model)
        if fresh:
            failures = self.notifier.send_text(
                f"Bedrock guardrail: unknown model priced at the ceiling rate ({len(fresh)})",
                "These model ids have no price in genai-prices or GUARDRAIL_PRICE_OVERRIDES, so the ledger "
                "prices them at GUARDRAIL_CEILING_RATE (never $0): " + ", ".join(fresh) + ". Add a price "
                'override, e.g. GUARDRAIL_PRICE_OVERRIDES=\'{"<model id>": {"input": 3, "output": 15}}\'.',
            )
            if failures:
                self._done(EffectReport(scope="global", level=Level.NORMAL, notification_failures=failures))
        return fresh

    # -- notification -----------------------------------------------------------------------------

    def _notify(self, committed: Committed, flag: Flag, report: EffectReport) -> None:
        t = committed.transition
        if t.from_level == t.to_level:
            return  # bookkeeping (an alarm joining or leaving at the same level): no page
        message = self.message(committed, report)
        if self.notifier is not None:
            report.notification_failures = self.notifier.send(message)

    def message(self, committed: Committed, report: EffectReport) -> AlertMessage:
        t = committed.transition
        burn = None
        if self.burn_rate is not None:
            try:
                burn = self.burn_rate(t.scope)
            except Exception as exc:  # a missing burn rate must not cost the alert
                report.failures.append(f"burn rate unavailable: {exc}")
        totals = committed.totals
        if self.leaders is not None:
            try:
                board = self.leaders(t.scope, totals.window)
                totals = replace(totals, breakdown={f"{d}:{k}": v for d, lead in board.items() for k, v in lead.top})
            except Exception as exc:  # missing top spenders must not cost the alert
                report.failures.append(f"top spenders unavailable: {exc}")
        return alert_message(
            scope=t.scope,
            from_level=t.from_level,
            to_level=t.to_level,
            budget=committed.budget,
            totals=totals,
            reason=t.reason,
            actions=report.actions + [f"FAILED: {f}" for f in report.failures],
            dry_run=self.dry_run,
            rearm=committed.after.rearm,
            burn=burn,
        )
