"""Shared targets: take, stop and release a target on behalf of one scope (DESIGN.md section 11).

A target's pre-guardrail state (a function's reserved concurrency, a role's "no deny") is saved once, in its
target item, and the item names every scope holding it stopped. Only the release that leaves no holder
restores it. Each step writes its durable record before it touches AWS, and checks afterwards that no racing
reset released it meanwhile. Every kind of target goes through the one adapter interface (target_kinds.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal

from guardrail.core.models import Observed, TargetHold
from guardrail.service.target_kinds import Targets
from guardrail.service.targets import aws_error
from guardrail.store.targets import TOMBSTONE_TTL, TargetStore

MAX_ATTEMPTS = 4
# A shutdown saves the schedule run's kept reading of a target (instead of reading it on the critical path)
# while it is at most this old: three runs at the default 5-minute rate. A reservation changed by hand after
# the last run is restored to what that run read.
READING_FRESH = timedelta(minutes=15)


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
class Take:
    """One scope's hold on one target, to be written (conditionally) in the flag's transaction."""

    name: str
    saved: int | None
    request: dict[str, Any]  # the conditional UpdateItem


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

    def plan(self, name: str, scope: str, item: TargetHold | None, out: Outcome) -> Take | Refused | None:
        """How `scope` takes hold of `name`, given its target item as last read (`item`): join a held item, or
        be its first holder and save its state. That state comes from the schedule run's kept reading while it
        is fresh and the item unchanged since, else from AWS (later holders never read: they would read our
        own stop). The update is conditional on the item being still as read. Returns why it may not be taken,
        or None when it could not be read."""
        kind = self.targets.kind(name)
        if item is not None and item.state == "held":
            return Take(name, item.saved, self.store.join_request(name, scope, item.saved))
        kept = self.kept_reading(item)
        if kept is not None:
            return Take(name, kept.value, self.store.take_request(name, scope, kept.value, item))
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
        return Take(name, saved, self.store.take_request(name, scope, saved, item))

    def kept_reading(self, item: TargetHold | None) -> Observed | None:
        """The schedule run's reading of a target nobody holds, if a shutdown may save it as it is: the item
        was not written since (no hold, so no stop of ours, came after it) and it is at most READING_FRESH old."""
        if item is None or item.observed is None or item.state == "held" or item.holders:
            return None
        observed = item.observed
        if observed.rev != item.rev or not timedelta(0) <= self.store.now() - observed.at <= READING_FRESH:
            return None
        return observed

    def observe(self, name: str, item: TargetHold | None, out: Outcome) -> None:
        """Schedule run: keep a fresh reading of a target nobody holds (`item`: its target item, read before
        the target). A target found stopped, missing, unreadable or refused is not kept (a shutdown reads it
        itself and applies the rules of `plan`): so a kept reading is never a stop of ours. Unreadable (not
        missing) is reported: a shutdown would not be able to read it either."""
        if item is not None and (item.state == "held" or item.holders):
            return
        kind = self.targets.kind(name)
        reading = kind.read(name)
        if reading.readable and not reading.stopped and not kind.conflict(reading):
            self.store.observe(name, reading.value, item)
            return
        if not reading.readable and not reading.missing:
            out.failures.append(f"{name}: could not read {kind.noun}: {reading.error}")
        if item is not None and item.observed is not None:
            self.store.forget_reading(name, item)

    def _recent(self, item: TargetHold) -> bool:
        return item.released_at is not None and self.store.now() - item.released_at < TOMBSTONE_TTL

    def stop(self, name: str, scope: str, saved: int | None, out: Outcome) -> bool:
        """Stop the target, then make sure `scope` still holds it (see `settle`). True when it stays stopped."""
        self.targets.kind(name).stop(name)
        return self.settle(name, scope, saved, self.store.get(name), out)

    def settle(self, name: str, scope: str, saved: int | None, item: TargetHold | None, out: Outcome) -> bool:
        """After the stop, with the target item read after it: a reset that released it while we stopped it
        would otherwise leave a stop nobody records, so it is undone. True when it stays stopped for `scope`."""
        kind = self.targets.kind(name)
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
