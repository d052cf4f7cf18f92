"""What on-call reads: the state of every scope, the audit trail, and what a reset would restore.

`status_document` builds the `status --json` contract (DESIGN.md section 5):
`{"scopes": [{"scope", "window", "spend_usd", "level", "thresholds", "model_downgrades", "targets"}]}` with
money as decimal strings; each scope also carries `since`, `trigger`, `reason`, `rearm`, `requests`, `mode`
and `unconfirmed` (client-reported spend no log confirmed in time, or null) (additive). Only while some
ledger batch's requests are recorded but not yet in the counters does the document carry a second key,
`ledger`: `{"open_batches", "oldest_opened_at"}`. The table is rendered from that same document, so the
two never disagree.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from guardrail.core.models import ESCALATION_LEVELS, AuditEntry, Budget, Flag, Level, ScopeTotals, reset_command, usd
from guardrail.core.text import one_line
from guardrail.service.confirmations import overdue
from guardrail.service.schedule import OPEN_BATCH_GRACE
from guardrail.store.breakdown import top_spenders
from guardrail.store.flags import flag_to_dict

if TYPE_CHECKING:
    from guardrail.service.engine import ScopeStatus
    from guardrail.service.runtime import Runtime

CONTRACT_KEYS = ("scope", "window", "spend_usd", "level", "thresholds", "model_downgrades", "targets")


# -- reading the world -------------------------------------------------------------------------------


def _concurrency_value(value: int | None) -> int | str:
    return "none" if value is None else value


def target_entries(runtime: Runtime, budget: Budget, flag: Flag) -> list[dict[str, Any]]:
    """Every target of the scope: the budget's (minus the guardrail's own) and any the flag still holds."""
    names = list(dict.fromkeys([*runtime.effects.targets_of(budget), *flag.targets]))
    out: list[dict[str, Any]] = []
    for name in names:
        state = flag.targets.get(name)
        kind = runtime.effects.targets.kind_name(name)
        reading = runtime.effects.targets.read(name)
        hold = None if runtime.settings.dry_run else runtime.effects.holds.store.get(name)
        saved = None if state is None else (hold.saved if hold else state.saved)
        entry: dict[str, Any] = {
            "function": name,  # the target's name: a function name, or a role's ARN (see "kind")
            "kind": kind,
            "saved": None if state is None else _concurrency_value(saved) if kind == "function" else "none",
            "current": reading.for_json(),
            "status": "untouched" if state is None else state.status,
            "message": "" if state is None else state.message,
            "holders": sorted(hold.holders) if hold is not None else [],
        }
        if not reading.readable:
            entry["error"] = reading.error
        out.append(entry)
    return out


def scope_entry(runtime: Runtime, status: ScopeStatus) -> dict[str, Any]:
    flag, budget, totals = status.flag, status.budget, status.totals
    as_dict = flag_to_dict(flag)
    rearm = flag.rearm
    rearmed = None
    if rearm is not None and rearm.window_key == totals.window.key:  # what the policy compares, as money
        rearmed = {lvl.label: str(rearm.baseline_spend + budget.thresholds.for_level(lvl)) for lvl in ESCALATION_LEVELS}
    return {
        "scope": status.scope,
        "window": {
            "kind": totals.window.kind,
            "start": totals.window.start.isoformat(),
            "end": totals.window.end.isoformat(),
        },
        "spend_usd": str(totals.spend),
        "level": flag.level.label,
        "thresholds": budget.thresholds.as_strings(),
        "model_downgrades": dict(flag.model_downgrades),
        "targets": target_entries(runtime, budget, flag),
        "since": as_dict["since"],
        "trigger": flag.trigger,
        "reason": flag.reason,
        "rearm": as_dict["rearm"],
        "rearmed_thresholds": rearmed,
        "requests": totals.requests,
        "mode": runtime.settings.mode,
        "top": top_entries(runtime, status),
        "unconfirmed": _unconfirmed(runtime, totals),
    }


def top_entries(runtime: Runtime, status: ScopeStatus) -> dict[str, Any]:
    """Top spenders per dimension (model, app, caller), how many others spent, and how much."""
    engine = runtime.engine
    board = top_spenders(engine.ledger.client, engine.ledger.table, status.scope, status.totals.window)
    return {
        dim + "s": {
            "top": [{"name": name, "spend_usd": str(spend)} for name, spend in lead.top],
            "others": lead.distinct - len(lead.top),
            "others_spend_usd": str(lead.other),
        }
        for dim, lead in board.items()
    }


def _unconfirmed(runtime: Runtime, totals: ScopeTotals) -> dict[str, Any] | None:
    """Spend only a client reported, no invocation log confirmed in time (part of `spend_usd`)."""
    late = overdue(runtime.engine, totals)
    if late is None:
        return None
    return {"spend_usd": str(late.spend), "requests": late.requests, "after_minutes": late.after_minutes}


def ledger_entry(runtime: Runtime) -> dict[str, Any] | None:
    """Ledger batches claimed but not applied yet (None: none): a writer at work, or one that stopped (the
    schedule run applies those after `OPEN_BATCH_GRACE`). Their spend is in no scope's total yet."""
    batches = runtime.engine.ledger.batches.open_batches()
    if not batches:
        return None
    return {"open_batches": len(batches), "oldest_opened_at": batches[0][1].isoformat()}


def status_document(runtime: Runtime) -> dict[str, Any]:
    document: dict[str, Any] = {"scopes": [scope_entry(runtime, s) for s in runtime.engine.status()]}
    ledger = ledger_entry(runtime)
    if ledger is not None:  # the contract's one key otherwise (DESIGN.md section 5)
        document["ledger"] = ledger
    return document


def status_json(runtime: Runtime) -> str:
    return json.dumps(status_document(runtime), indent=2)


# -- rendering ---------------------------------------------------------------------------------------


def _when(iso: str | None) -> str:
    if not iso:
        return "-"
    return datetime.fromisoformat(iso).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _money(text: str | None) -> str:
    return usd(Decimal(text)) if text is not None else "-"


def _table(rows: list[list[str]], indent: str = "") -> list[str]:
    # Every cell may hold outside text (scopes, reasons, actors, model ids): escaped, so a row stays a row.
    rows = [[one_line(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [indent + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]


def _thresholds_line(entry: dict[str, Any]) -> str:
    """Each level at the spend where it comes next: after a reset that is the re-armed amount."""
    spend = Decimal(entry["spend_usd"])
    rearmed = entry.get("rearmed_thresholds") or {}
    parts = []
    for level in ESCALATION_LEVELS:
        threshold = Decimal(rearmed.get(level.label, entry["thresholds"][level.label]))
        mark = "reached" if spend >= threshold else f"{usd(threshold - spend)} to go"
        parts.append(f"{level.label} {usd(threshold)} ({mark})")
    return " | ".join(parts) + (" (re-armed after a reset)" if rearmed else "")


def render_scope(entry: dict[str, Any]) -> list[str]:
    level = entry["level"]
    head = f"{one_line(entry['scope'])}: {level.upper()}"
    if entry.get("mode") == "dry-run":
        head += "  [DRY-RUN: nothing is enforced]"
    window = entry["window"]
    lines = [head]
    rows = [["window", f"{window['kind']} {_when(window['start'])} -> {_when(window['end'])}"]]
    rows.append(["spend", f"{_money(entry['spend_usd'])} in {entry.get('requests', 0)} requests"])
    rows.append(["thresholds", _thresholds_line(entry)])
    if late := entry.get("unconfirmed"):
        rows.append(
            [
                "unconfirmed",
                f"{_money(late['spend_usd'])} in {late['requests']} requests only a client reported; no invocation "
                f"log within {late['after_minutes']} min (counted; check invocation logging)",
            ]
        )
    if level != Level.NORMAL.label or entry.get("since"):
        rows.append(["since", f"{_when(entry.get('since'))} ({entry.get('trigger', '-')})"])
        rows.append(["why", entry.get("reason") or "-"])
    downgrades = entry["model_downgrades"]
    rows.append(["downgrades", ", ".join(f"{a} -> {b}" for a, b in downgrades.items()) if downgrades else "none"])
    rearm = entry.get("rearm")
    if rearm:
        text = f"thresholds count from {_money(rearm['baseline_spend'])} of this window's spend"
        if rearm.get("snooze_until"):
            text += f"; no escalation before {_when(rearm['snooze_until'])}"
        rows.append(["re-arm", text])
    for dim, lead in entry.get("top", {}).items():
        if lead["top"]:
            names = ", ".join(f"{t['name']} {_money(t['spend_usd'])}" for t in lead["top"])
            more = f" (+{lead['others']} others {_money(lead['others_spend_usd'])})" if lead["others"] else ""
            rows.append([f"top {dim}", names + more])
    lines += _table(rows, indent="  ")
    targets = entry["targets"]
    if not targets:
        lines.append("  targets     none configured (GUARDRAIL_TARGET_FUNCTIONS, GUARDRAIL_TARGET_ROLES)")
    else:
        table = [["targets", "FUNCTION / ROLE", "SAVED", "CURRENT", "STATE", "HELD BY"]]
        for t in targets:
            saved = "-" if t["saved"] is None else str(t["saved"])
            current = "?" if t["current"] is None else str(t["current"])
            state = t["status"] + (f": {t['message']}" if t.get("message") else "")
            if t.get("error"):
                state += f" (cannot read: {t['error']})"
            table.append(["", t["function"], saved, current, state, ", ".join(t.get("holders", [])) or "-"])
        lines += _table(table, indent="  ")
    return lines


def render_ledger(entry: dict[str, Any]) -> str:
    return (
        f"ledger: {entry['open_batches']} batch(es) of requests recorded but not yet in the totals above "
        f"(oldest opened {_when(entry['oldest_opened_at'])}); the schedule run applies a batch still open "
        f"{OPEN_BATCH_GRACE.total_seconds() / 60:g} min after it opened"
    )


def render_status(document: dict[str, Any]) -> str:
    blocks = ["\n".join(render_scope(e)) for e in document["scopes"]]
    if not blocks:
        blocks = ["no scopes: no budget is configured and no flag is stored"]
    if "ledger" in document:  # present only while some batch is open
        blocks.insert(0, render_ledger(document["ledger"]))
    return "\n\n".join(blocks)


# -- history -----------------------------------------------------------------------------------------


def audit_to_dict(entry: AuditEntry) -> dict[str, Any]:
    return {
        "at": entry.at.astimezone(UTC).isoformat(),
        "scope": entry.scope,
        "actor": entry.actor,
        "action": entry.action,
        "reason": entry.reason,
        "level_before": entry.before.get("level"),
        "level_after": entry.after.get("level"),
        "entry_id": entry.entry_id,
    }


@dataclass(frozen=True)
class HistoryFilter:
    scope: str | None = None
    actor: str | None = None
    action: str | None = None
    since: datetime | None = None
    limit: int = 20

    def matches(self, entry: AuditEntry) -> bool:
        if self.actor and self.actor.lower() not in entry.actor.lower():
            return False
        if self.action and _typed(self.action) not in _typed(action_words(entry)):
            return False
        return not (self.since and entry.at < self.since)


def _typed(text: str) -> str:
    """What a person types and what is stored, compared alike: `-> normal` finds `shutdown->normal`."""
    return "".join(text.lower().split())


def action_words(entry: AuditEntry) -> str:
    """The action, plus the trigger of a transition (`reset`, `threshold`, `alarm`, `rollover`), so that
    `--action reset` finds the `shutdown->normal` an on-call reset wrote."""
    trigger = entry.after.get("trigger")
    return f"{entry.action} {trigger}" if trigger and "->" in entry.action else entry.action


def history(runtime: Runtime, filt: HistoryFilter) -> list[AuditEntry]:
    """Audit entries, newest first, filtered. Reads more than `limit` when other filters thin it out."""
    wide = filt.actor or filt.action or filt.since
    fetched = runtime.engine.flags.history(filt.scope, limit=max(filt.limit * 10, 500) if wide else filt.limit)
    out = []
    for entry in fetched:
        if filt.since and entry.at < filt.since:
            break  # newest first: everything after is older
        if filt.matches(entry):
            out.append(entry)
            if len(out) >= filt.limit:
                break
    return out


def render_history(entries: list[AuditEntry]) -> str:
    if not entries:
        return "no audit entries match"
    rows = [["WHEN (UTC)", "SCOPE", "ACTOR", "ACTION", "REASON"]]
    for e in entries:
        rows.append([e.at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"), e.scope, e.actor, e.action, e.reason])
    return "\n".join(_table(rows))


# -- reset preview -----------------------------------------------------------------------------------


@dataclass
class ResetPreview:
    scope: str
    flag: Flag
    budget: Budget
    spend: Decimal
    restores: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def nothing_to_do(self) -> bool:
        return self.flag.level == Level.NORMAL and not self.flag.targets

    @property
    def retry_only(self) -> bool:
        """Normal already, but AWS refused restoring some targets earlier: only those are retried."""
        return self.flag.level == Level.NORMAL and bool(self.flag.targets)

    def lines(self) -> list[str]:
        f = self.flag
        out = [f"scope {self.scope}: {f.level.label.upper()} since {_when(flag_to_dict(f)['since'])} ({f.trigger})"]
        if f.reason:
            out.append(f"  why: {f.reason}")
        out.append(f"  spend this {self.budget.window}: {usd(self.spend)}")
        out += [f"  will {r}" for r in self.restores] or ["  nothing to restore"]
        out += [f"  {n}" for n in self.notes]
        return [one_line(line) for line in out]


def reset_preview(
    runtime: Runtime,
    scope: str,
    *,
    rearm_from_zero: bool = False,
    snooze_until: datetime | None = None,
) -> ResetPreview:
    """What `guardrail reset` would do, read before doing it (raises ScopeNotFound for unknown scopes)."""
    engine = runtime.engine
    budget = engine.budget(scope)
    flag = engine.flags.get(scope)
    spend = engine.scope_totals(scope).spend
    preview = ResetPreview(scope=scope, flag=flag, budget=budget, spend=spend)
    for name, state in flag.targets.items():
        reading = runtime.effects.targets.read(name)
        now = "unreadable" if not reading.readable else reading.describe()
        saved = _concurrency_value(state.saved)
        if runtime.effects.targets.kind_name(name) == "role":
            how = "no deny (remove the guardrail's deny policy)"
        else:
            how = "no reserved concurrency" if state.saved is None else f"reserved concurrency {saved}"
        failed = f" (restore failed before: {state.message})" if state.status == "restore_failed" else ""
        preview.restores.append(f"restore {name} to {how} (now {now}){failed}")
        if not reading.readable:
            preview.notes.append(f"cannot read {name}: {reading.error}")
    if f_downgrades := flag.model_downgrades:
        pairs = ", ".join(f"{a} -> {b}" for a, b in f_downgrades.items())
        preview.restores.append(f"lift model downgrades ({pairs})")
    if flag.level > Level.NORMAL:
        preview.restores.append(f"set the level {flag.level.label} -> normal")
    if flag.active_alarms:
        preview.notes.append(f"active alarms forgotten: {', '.join(flag.active_alarms)}")
    if preview.retry_only:
        preview.notes.append("the level is normal already: only the failed restores are retried")
    elif snooze_until is not None:
        preview.notes.append(f"re-arm: no escalation before {snooze_until.astimezone(UTC):%Y-%m-%d %H:%M:%S UTC}")
    elif rearm_from_zero:
        preview.notes.append(
            f"re-arm: thresholds count from $0 again: this window's {usd(spend)} counts at once "
            f"(it is at {budget.thresholds.level_for(spend).label} already)"
        )
    else:
        nxt = ", ".join(f"{lvl.label} at {usd(spend + budget.thresholds.for_level(lvl))}" for lvl in ESCALATION_LEVELS)
        preview.notes.append(f"re-arm: thresholds count from today's {usd(spend)} ({nxt})")
    return preview


def render_reset(result: dict[str, Any]) -> str:
    lines = [f"scope {one_line(result['scope'])}: {result['from_level']} -> {result['to_level']}"]
    lines += [f"  done: {one_line(a)}" for a in result["restored"]] or ["  done: nothing needed restoring"]
    for failure in result["failures"]:
        lines.append(f"  FAILED: {one_line(failure)}")
    for failure in result["notification_failures"]:
        lines.append(f"  notification not sent: {one_line(failure)} (the reset itself is done)")
    rearm = result.get("rearm")
    if rearm:
        text = f"  re-armed: thresholds count from {usd(Decimal(str(rearm['baseline_spend'])))} of this window's spend"
        if rearm.get("snooze_until"):
            text += f"; no escalation before {rearm['snooze_until']}"
        lines.append(text)
    if result["failures"]:
        lines.append(
            "  next: the saved values are kept in the flag; the schedule run retries the restore every few "
            f"minutes, or fix the cause and run `{one_line(reset_command(result['scope']))}` again. "
            "`guardrail status` shows each target's saved and current concurrency."
        )
    else:
        lines.append("  next: `guardrail status` to verify, `guardrail history` for the audit trail")
    return "\n".join(lines)
