"""Admission of a guarded call (pure): which scopes a call counts in, their current windows, and what one
snapshot of their flags means for calls (refuse, downgrade, each scope's shutdown limit)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, NamedTuple

from guardrail.client.flag_cache import ScopeView
from guardrail.client.local_spend import Ticket
from guardrail.client.units import to_units
from guardrail.core.models import Budget, CounterKey, Flag, Level

# Converse requestMetadata: at most 16 pairs, this alphabet, 256 characters.
REQUEST_METADATA_TEXT = re.compile(r"[a-zA-Z0-9\s:_@$#=/+,\-.]{0,256}")


@dataclass(frozen=True, slots=True)
class Windows:
    """The current window of each scope of a scope set: counter keys, book names, and until when."""

    keys: tuple[CounterKey, ...] = ()
    books: tuple[str, ...] = ()
    cache_key: str = ""
    valid_until: float = -1.0


@dataclass(frozen=True, slots=True)
class Verdict:
    """What one flag snapshot means for calls: evaluated once per snapshot, not once per call. `limits`:
    each scope's shutdown limit in units (guardrail.client.units), None while it has none."""

    views: tuple[ScopeView, ...]
    limits: tuple[int | None, ...]
    downgrades: dict[str, str] | None
    throttled_scope: str
    refuse: tuple[str, ScopeView] | None
    cacheable: bool
    dollars: tuple[Decimal | None, ...] = ()  # the same limits in dollars, as configured (for messages)


class ScopeSet:
    """The scopes one metadata selects, their current windows, and the verdict of the last flags."""

    __slots__ = ("scopes", "verdict", "windows")

    def __init__(self, scopes: tuple[tuple[str, Budget], ...]) -> None:
        self.scopes = scopes
        self.windows = Windows()
        self.verdict: Verdict | None = None


class Call(NamedTuple):
    """One guarded call between its admission and its usage report (`limits` in units). A tuple: the hot
    path builds it with `tuple.__new__`, without a Python call."""

    operation: str
    kwargs: dict[str, Any]
    scopes: ScopeSet
    limits: tuple[int | None, ...]
    ticket: Ticket
    metadata: dict[str, str]
    model_id: str
    downgrade: dict[str, str] | None = None


def decide(
    scope_set: ScopeSet, windows: Windows, views: tuple[ScopeView, ...], *, dry_run: bool, now: float
) -> Verdict:
    """What the flags of a scope set mean for calls: refuse, downgrade, and each scope's shutdown limit."""
    downgrades: dict[str, str] | None = None
    limits: list[int | None] = []
    dollars: list[Decimal | None] = []
    refuse: tuple[str, ScopeView] | None = None
    throttled = ""
    cacheable = True
    for (scope, budget), view, (_, window) in zip(scope_set.scopes, views, windows.keys, strict=True):
        flag = view.flag
        if flag.level is Level.SHUTDOWN and refuse is None:
            refuse = (scope, view)
        if flag.level >= Level.THROTTLE:
            downgrades = {**(downgrades or {}), **(flag.model_downgrades or budget.model_downgrades)}
            throttled = throttled or scope
        if flag.rearm is not None and flag.rearm.snooze_until is not None:
            cacheable = False  # a snooze ends on its own: re-evaluate on every call
        limit = None if dry_run else shutdown_limit(budget, flag, window.key, now)
        limits.append(None if limit is None else to_units(limit))
        dollars.append(limit)
    return Verdict(views, tuple(limits), downgrades, throttled, refuse, cacheable, tuple(dollars))


def shutdown_limit(budget: Budget, flag: Flag, window_key: str, now: float) -> Decimal | None:
    """The spend at which this scope shuts down in this window (None while a reset snooze lasts)."""
    rearm = flag.rearm
    if rearm is None or rearm.window_key != window_key:
        return budget.thresholds.shutdown
    if rearm.snooze_until is not None and now < rearm.snooze_until.timestamp():
        return None
    return budget.thresholds.shutdown + rearm.baseline_spend


def request_metadata(metadata: Mapping[str, str]) -> dict[str, str]:
    """The client's metadata that Converse accepts as requestMetadata (16 pairs, a restricted alphabet)."""
    out = {
        k: v
        for k, v in metadata.items()
        if 1 <= len(k) <= 256 and REQUEST_METADATA_TEXT.fullmatch(k) and REQUEST_METADATA_TEXT.fullmatch(v)
    }
    return dict(list(out.items())[:16])
