"""Flags (one state item per scope) and the append-only audit trail, in the ledger table.

A flag moves only by a conditional write on its version, in the same transaction as its audit entry,
so when two invocations cross a threshold at once exactly one wins, and only the winner acts.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from guardrail.core.errors import FlagConflict
from guardrail.core.models import AuditEntry, Flag, Level, Rearm, TargetState, Transition
from guardrail.store.table import AUDIT_PK, all_items, audit_key, flag_key, flag_prefix, item_key, new_id

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value else None


def _dt(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


class ItemConflict(Exception):
    """A flag change's transaction was cancelled by the condition of one of the items written with it (the
    flag itself had not moved): `failed` are their indices in `extra`."""

    def __init__(self, failed: list[int]) -> None:
        super().__init__(f"items {failed} changed")
        self.failed = failed


def flag_to_dict(flag: Flag) -> dict[str, Any]:
    """A JSON-able view of a flag (stored in DynamoDB, audit before/after, `status --json`)."""
    return {
        "scope": flag.scope,
        "level": flag.level.label,
        "since": _iso(flag.since),
        "trigger": flag.trigger,
        "reason": flag.reason,
        "window_key": flag.window_key,
        "version": flag.version,
        "rearm": None
        if flag.rearm is None
        else {
            "window_key": flag.rearm.window_key,
            "baseline_spend": str(flag.rearm.baseline_spend),
            "snooze_until": _iso(flag.rearm.snooze_until),
        },
        "active_alarms": {k: v.label for k, v in flag.active_alarms.items()},
        "model_downgrades": dict(flag.model_downgrades),
        "targets": {
            name: {"saved": "none" if t.saved is None else t.saved, "status": t.status, "message": t.message}
            for name, t in flag.targets.items()
        },
        "applied": flag.applied,
        "previous_level": flag.previous_level.label,
    }


def flag_from_dict(data: dict[str, Any]) -> Flag:
    rearm = data.get("rearm")
    return Flag(
        scope=str(data["scope"]),
        level=Level.parse(str(data.get("level", "normal"))),
        since=_dt(data.get("since")),
        trigger=data.get("trigger", "threshold"),
        reason=str(data.get("reason", "")),
        window_key=str(data.get("window_key", "")),
        version=int(data.get("version", 0)),
        rearm=None
        if not rearm
        else Rearm(
            window_key=str(rearm["window_key"]),
            baseline_spend=Decimal(str(rearm.get("baseline_spend", "0"))),
            snooze_until=_dt(rearm.get("snooze_until")),
        ),
        active_alarms={k: Level.parse(str(v)) for k, v in (data.get("active_alarms") or {}).items()},
        model_downgrades={str(k): str(v) for k, v in (data.get("model_downgrades") or {}).items()},
        targets={
            name: TargetState(
                saved=None if t.get("saved") in (None, "none") else int(t["saved"]),
                status=t.get("status", "saved"),
                message=str(t.get("message", "")),
            )
            for name, t in (data.get("targets") or {}).items()
        },
        applied=bool(data.get("applied", True)),
        previous_level=Level.parse(str(data.get("previous_level", "normal"))),
    )


def _serializer() -> Any:
    from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

    return TypeSerializer(), TypeDeserializer()


def _to_item(data: dict[str, Any]) -> dict[str, Any]:
    ser, _ = _serializer()
    return {k: ser.serialize(v) for k, v in data.items()}


def _from_item(item: dict[str, Any]) -> dict[str, Any]:
    _, de = _serializer()
    return {k: de.deserialize(v) for k, v in item.items()}


def flag_from_item(item: dict[str, Any]) -> Flag:
    """A flag as stored (DynamoDB attribute values) back into a Flag."""
    return flag_from_dict(_from_item(item))


class FlagStore:
    def __init__(
        self,
        client: DynamoDBClient,
        table_name: str,
        *,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        dry_run: bool = False,
    ) -> None:
        self.client = client
        self.table = table_name
        self.now = now
        self.dry_run = dry_run
        self.prefix = flag_prefix(dry_run=dry_run)

    def get(self, scope: str) -> Flag:
        resp = self.client.get_item(TableName=self.table, Key=item_key(self.key(scope)), ConsistentRead=True)
        item = resp.get("Item")
        return flag_from_item(item) if item else Flag(scope=scope)

    def key(self, scope: str) -> tuple[str, str]:
        return flag_key(scope, dry_run=self.dry_run)

    def from_items(self, scopes: Iterable[str], items: dict[tuple[str, str], dict[str, Any]]) -> dict[str, Flag]:
        """Flags out of a batch read (missing ones are a fresh normal flag)."""
        out = {}
        for scope in scopes:
            item = items.get(self.key(scope))
            out[scope] = flag_from_item(item) if item else Flag(scope=scope)
        return out

    def list_all(self) -> list[Flag]:
        """Every flag in the table (status). Flags are few; a filtered scan is fine."""
        items = all_items(
            self.client.scan,
            TableName=self.table,
            FilterExpression="begins_with(pk, :p)",
            ExpressionAttributeValues={":p": {"S": self.prefix}},
            ConsistentRead=True,
        )
        return sorted(map(flag_from_item, items), key=lambda f: (f.scope != "global", f.scope))

    def commit(
        self,
        before: Flag,
        after: Flag,
        *,
        actor: str,
        action: str,
        reason: str,
        extra: Sequence[dict[str, Any]] = (),
    ) -> AuditEntry:
        """Write `after` only if the stored flag is still `before` (by version), with its audit entry and the
        `extra` transaction items (conditional target updates), all or nothing.

        Raises FlagConflict when another invocation moved the flag first, ItemConflict when an extra item's
        condition failed.
        """
        if after.version != before.version + 1:
            raise ValueError("a committed flag must be exactly one version after the one it replaces")
        now = self.now()
        entry = AuditEntry(
            scope=after.scope,
            at=now,
            actor=actor,
            action=f"[dry-run] {action}" if self.dry_run else action,
            reason=reason,
            before=flag_to_dict(before),
            after=flag_to_dict(after),
            entry_id=new_id(),
        )
        flag_item = {**item_key(self.key(after.scope)), **_to_item(flag_to_dict(after))}
        put_flag: dict[str, Any] = {"TableName": self.table, "Item": flag_item}
        if before.version == 0:
            put_flag["ConditionExpression"] = "attribute_not_exists(pk)"
        else:
            put_flag["ConditionExpression"] = "#v = :v"
            put_flag["ExpressionAttributeNames"] = {"#v": "version"}
            put_flag["ExpressionAttributeValues"] = {":v": {"N": str(before.version)}}
        try:
            items: list[Any] = [{"Put": put_flag}, {"Put": {"TableName": self.table, "Item": audit_item(entry)}}]
            items.extend(extra)
            self.client.transact_write_items(TransactItems=items)
        except self.client.exceptions.TransactionCanceledException as exc:
            codes = [r.get("Code") for r in exc.response.get("CancellationReasons", [])]
            if codes and codes[0] == "ConditionalCheckFailed":
                raise FlagConflict(f"flag {after.scope!r} moved past version {before.version}") from None
            # A concurrent transaction on the same item (TransactionConflict) is a change too: read and retry.
            failed = [
                i for i, code in enumerate(codes[2:]) if code in ("ConditionalCheckFailed", "TransactionConflict")
            ]
            if failed:
                raise ItemConflict(failed) from None
            raise
        return entry

    def transition(self, before: Flag, after: Flag, transition: Transition, *, actor: str = "guardrail") -> AuditEntry:
        action = (
            f"{transition.from_level.label}->{transition.to_level.label}"
            if transition.from_level != transition.to_level
            else f"{transition.trigger}:{transition.to_level.label}"
        )
        return self.commit(before, after, actor=actor, action=action, reason=transition.reason)

    def update(
        self,
        before: Flag,
        *,
        actor: str,
        action: str,
        reason: str,
        extra: Sequence[dict[str, Any]] = (),
        **changes: Any,
    ) -> Flag:
        """A version-checked change of a flag's effect bookkeeping (targets, applied), audited, with `extra`
        transaction items written in the same transaction."""
        after = replace(before, version=before.version + 1, **changes)
        self.commit(before, after, actor=actor, action=action, reason=reason, extra=extra)
        return after

    def history(self, scope: str | None = None, limit: int = 50) -> list[AuditEntry]:
        """The audit trail, newest first, optionally for one scope."""
        entries: list[AuditEntry] = []
        if limit <= 0:
            return entries
        for item in all_items(
            self.client.query,
            TableName=self.table,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": AUDIT_PK}},
            ScanIndexForward=False,
        ):
            entry = audit_from_item(item)
            if scope is None or entry.scope == scope:
                entries.append(entry)
                if len(entries) == limit:  # no further page is read
                    break
        return entries


def audit_item(entry: AuditEntry) -> dict[str, Any]:
    return {
        **item_key(audit_key(entry.at, entry.scope, int(entry.after.get("version", 0)), entry.entry_id)),
        "scope": {"S": entry.scope},
        "at": {"S": entry.at.astimezone(UTC).isoformat()},
        "actor": {"S": entry.actor},
        "action": {"S": entry.action},
        "reason": {"S": entry.reason or "-"},
        "before": {"S": json.dumps(entry.before, sort_keys=True)},
        "after": {"S": json.dumps(entry.after, sort_keys=True)},
        "entry_id": {"S": entry.entry_id},
    }


def audit_from_item(item: dict[str, Any]) -> AuditEntry:
    return AuditEntry(
        scope=item["scope"]["S"],
        at=datetime.fromisoformat(item["at"]["S"]),
        actor=item["actor"]["S"],
        action=item["action"]["S"],
        reason=item["reason"]["S"],
        before=json.loads(item["before"]["S"]),
        after=json.loads(item["after"]["S"]),
        entry_id=item["entry_id"]["S"],
    )
