"""Shared targets: take, stop and release a target function on behalf of one scope (DESIGN.md section 11).

A target's pre-guardrail reserved concurrency is saved once, in its target item, and the item names every
scope holding it at 0. Only the release that leaves no holder restores it. Each step writes its durable
record before it touches Lambda, and checks afterwards that no racing reset released it meanwhile.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from guardrail.core.models import TargetHold
from guardrail.service.targets import Concurrency, aws_error, describe_saved, not_found, restore_cli
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


class Holds:
    def __init__(self, concurrency: Concurrency, store: TargetStore) -> None:
        self.concurrency = concurrency
        self.store = store

    def take(self, function: str, scope: str, out: Outcome) -> TargetHold | str | None:
        """Hold `function` for `scope`. The saved state is read from Lambda only by the first holder (later
        ones would read our own 0). Returns the hold, a message when the function does not exist, or None
        when it could not be read."""
        for _ in range(MAX_ATTEMPTS):
            item = self.store.get(function)
            if item is not None and item.state == "held":
                taken = self.store.join(function, scope)
            else:
                reading = self.concurrency.read(function)
                if reading.missing:
                    return reading.error
                if not reading.readable:
                    out.failures.append(f"{function}: could not read reserved concurrency: {reading.error}")
                    return None
                saved = reading.value
                if item is not None and saved == 0 and self._recent(item):
                    saved = item.saved  # a fresh tombstone's 0 may be a late stop of ours: the saved state stands
                taken = self.store.take(function, scope, saved, over_tombstone=item is not None)
            if taken is not None:
                return taken
        out.failures.append(f"{function}: its target item kept changing; the schedule run will retry")
        return None

    def _recent(self, item: TargetHold) -> bool:
        return item.released_at is not None and self.store.now() - item.released_at < TOMBSTONE_TTL

    def stop(self, function: str, scope: str, saved: int | None, out: Outcome) -> bool:
        """Reserved concurrency 0, then make sure `scope` still holds it: a reset that released it while we
        stopped it would otherwise leave a 0 nobody records. True when it stays stopped for `scope`."""
        self.concurrency.stop(function)
        item = self.store.get(function)
        if item is not None and scope in item.holders:
            return True
        if item is None or not item.holders:
            value = saved if item is None else item.saved
            try:
                self.concurrency.restore(function, value)
                out.actions.append(f"{function} was released while being stopped: restored to {describe_saved(value)}")
            except Exception as exc:
                out.failures.append(f"{function}: undo of a stop after a reset failed ({aws_error(exc)})")
        return False

    def release(self, function: str, scope: str | None, fallback_saved: int | None, out: Outcome) -> Release:
        """End `scope`'s hold; restore the saved state when no holder is left (`fallback_saved`: a flag from
        before target items). None as scope retries a pending restore without changing the holders."""
        item = self.store.release(function, scope)
        if item is not None and item.holders:
            out.actions.append(f"{function} stays at 0: still held by {', '.join(sorted(item.holders))}")
            return Release("still_held")
        saved = fallback_saved if item is None else item.saved
        try:
            self.concurrency.restore(function, saved)
        except Exception as exc:
            if not_found(exc):
                self.store.forget(function)
                out.actions.append(f"{function} no longer exists: released, nothing to restore")
                return Release("gone")
            message = aws_error(exc)
            out.failures.append(
                f"{function}: restore to {describe_saved(saved)} failed ({message}); the saved value is kept. "
                "Free unreserved concurrency (the account keeps at least 10-100 unreserved) or restore "
                f"by hand: {restore_cli(function, saved)}, then run the reset again"
            )
            return Release("failed", message)
        if item is not None and not self.store.mark_released(function):
            # Another scope took hold while we restored: its shutdown stands.
            self.concurrency.stop(function)
            out.actions.append(f"{function} stays at 0: another scope stopped it meanwhile")
            return Release("still_held")
        out.actions.append(f"restored {function} to {describe_saved(saved)}")
        return Release("restored")
