"""Shared targets: take, stop and release a target on behalf of one scope (DESIGN.md section 11).

A target's pre-guardrail state (a function's reserved concurrency, a role's "no deny") is saved once, in its
target item, and the item names every scope holding it stopped. Only the release that leaves no holder
restores it. Each step writes its durable record before it touches AWS, and checks afterwards that no racing
reset released it meanwhile. Every kind of target goes through the one adapter interface (target_kinds.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from guardrail.core.models import TargetHold
from guardrail.service.target_kinds import Targets
from guardrail.service.targets import aws_error
from guardrail.store.targets import TOMBSTONE_TTL, TargetStore

MAX_ATTEMPTS = 4


@dataclass
class Outcome:
    """What one step did to one target, for the effect report."""

    actions: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Release:
    """The end of one scope's hold: done (restored, still held by others, or gone), or a failed restore."""

    result: Literal["restored", "still_held", "gone", "failed"]
    message: str = ""


@dataclass(frozen=True, slots=True)
class Refused:
    """A target the guardrail must not take: found in a state it may not save (a role with a policy of the
    guardrail's name that the guardrail did not put there), or that does not exist."""

    message: str
    status: Literal["missing", "refused"]


class Holds:
    def __init__(self, targets: Targets, store: TargetStore) -> None:
        self.targets = targets
        self.store = store

    def take(self, name: str, scope: str, out: Outcome) -> TargetHold | Refused | None:
        """Hold `name` for `scope`. The saved state is read from AWS only by the first holder (later ones
        would read our own stop). Returns the hold, why it may not be taken, or None when it could not be
        read."""
        kind = self.targets.kind(name)
        for _ in range(MAX_ATTEMPTS):
            item = self.store.get(name)
            if item is not None and item.state == "held":
                taken = self.store.join(name, scope)
            else:
                reading = kind.read(name)
                if reading.missing:
                    return Refused(reading.error, "missing")
                if not reading.readable:
                    out.failures.append(f"{name}: could not read {kind.noun}: {reading.error}")
                    return None
                saved = reading.value
                if item is not None and reading.stopped and self._recent(item):
                    saved = item.saved  # a fresh tombstone's stop may be a late stop of ours: the saved state stands
                elif conflict := kind.conflict(reading):
                    return Refused(conflict, "refused")
                taken = self.store.take(name, scope, saved, over_tombstone=item is not None)
            if taken is not None:
                return taken
        out.failures.append(f"{name}: its target item kept changing; the schedule run will retry")
        return None

    def _recent(self, item: TargetHold) -> bool:
        return item.released_at is not None and self.store.now() - item.released_at < TOMBSTONE_TTL

    def stop(self, name: str, scope: str, saved: int | None, out: Outcome) -> bool:
        """Stop the target, then make sure `scope` still holds it: a reset that released it while we stopped
        it would otherwise leave a stop nobody records. True when it stays stopped for `scope`."""
        kind = self.targets.kind(name)
        kind.stop(name)
        item = self.store.get(name)
        if item is not None and scope in item.holders:
            return True
        if item is None or not item.holders:
            value = saved if item is None else item.saved
            try:
                kind.restore(name, value)
                out.actions.append(f"{name} was released while being stopped: restored to {kind.describe_saved(value)}")
            except Exception as exc:
                out.failures.append(f"{name}: undo of a stop after a reset failed ({aws_error(exc)})")
        return False

    def release(self, name: str, scope: str | None, fallback_saved: int | None, out: Outcome) -> Release:
        """End `scope`'s hold; restore the saved state when no holder is left (`fallback_saved`: a flag from
        before target items). None as scope retries a pending restore without changing the holders."""
        kind = self.targets.kind(name)
        item = self.store.release(name, scope)
        if item is not None and item.holders:
            out.actions.append(f"{name} stays {kind.stopped_label}: still held by {', '.join(sorted(item.holders))}")
            return Release("still_held")
        saved = fallback_saved if item is None else item.saved
        try:
            kind.restore(name, saved)
        except Exception as exc:
            if kind.not_found(exc):
                self.store.forget(name)
                out.actions.append(f"{name} no longer exists: released, nothing to restore")
                return Release("gone")
            message = aws_error(exc)
            out.failures.append(
                f"{name}: restore to {kind.describe_saved(saved)} failed ({message}); the saved value is kept. "
                + kind.restore_help(name, saved)
            )
            return Release("failed", message)
        if item is not None and not self.store.mark_released(name):
            # Another scope took hold while we restored: its shutdown stands.
            kind.stop(name)
            out.actions.append(f"{name} stays {kind.stopped_label}: another scope stopped it meanwhile")
            return Release("still_held")
        out.actions.append(f"restored {name} to {kind.describe_saved(saved)}")
        return Release("restored")
