"""Domain types shared by every layer. Pure: no boto3, no I/O.

Money is always `Decimal` (exact USD). Records inside the engine are frozen dataclasses (cheap to build
on the hot path); pydantic models validate what crosses an edge (events, settings, stored items).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Literal

from guardrail.core.price_table import Billing
from guardrail.core.text import shell_quote

ZERO = Decimal(0)


def usd(value: Decimal) -> str:
    """Money for people: dollars and cents, half up (the ledger keeps every decimal)."""
    return f"${value.quantize(Decimal('0.01'), rounding=ROUND_HALF_UP)}"


def reset_command(scope: str) -> str:
    """The exact command on-call runs to restore a scope (quoted in alerts and errors). The scope comes
    from outside (request metadata), so it is one shell-quoted word: a paste runs exactly what it shows."""
    return f"guardrail reset --scope {shell_quote(scope)} --reason '<what was fixed>'"


class Level(enum.IntEnum):
    """Escalation levels, ordered: comparisons mean 'more severe than'."""

    NORMAL = 0
    ALERT = 1
    THROTTLE = 2
    SHUTDOWN = 3

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, value: str | int | Level) -> Level:
        if isinstance(value, Level):
            return value
        if isinstance(value, int):
            return cls(value)
        try:
            return cls[value.strip().upper()]
        except KeyError:
            raise ValueError(f"unknown level {value!r}; expected one of normal, alert, throttle, shutdown") from None


ESCALATION_LEVELS = (Level.ALERT, Level.THROTTLE, Level.SHUTDOWN)

WindowKind = Literal["5min", "hour", "day", "month"]
BudgetWindow = Literal["hour", "day", "month"]
RATE_WINDOW: WindowKind = "5min"  # short buckets kept beside each budget window, for burn rates
Source = Literal["invocation-log", "client", "event"]


@dataclass(slots=True)
class UsageRecord:
    """One Bedrock request's tokens. `input_tokens` excludes cache tokens, as Bedrock reports it.

    Treat as immutable (change a copy: `dataclasses.replace`). Not `frozen` only because one is built per
    record on the ingest hot path, where a frozen init costs twice as much."""

    request_id: str
    timestamp: datetime
    model_id: str
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    region: str = ""
    caller: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    source: Source = "invocation-log"
    partial: bool = False
    # The part of `cache_write_tokens` written with a 1-hour TTL (the rest is 5-minute), when the source says.
    cache_write_1h_tokens: int = 0
    # `priority`, `flex`, `batch`, `reserved` when the source names the tier; "" for standard or unknown.
    service_tier: str = ""
    latency_optimized: bool = False


@dataclass(slots=True)
class Price:
    """Exact cost of one record, with how it was priced. Treat as immutable: not `frozen` only because
    one is built per record on the pricing hot path, where a frozen init costs three times as much."""

    cost: Decimal
    priced_model: str
    at_ceiling: bool = False
    billing: Billing = "token"  # anything else: Bedrock bills it otherwise and `cost` is 0


@dataclass(frozen=True, slots=True)
class PricedRecord:
    record: UsageRecord
    price: Price

    @property
    def cost(self) -> Decimal:
        return self.price.cost


@dataclass(frozen=True, slots=True)
class FailedRequest:
    """A request Bedrock refused or failed (a log record with `errorCode` and no token counts): not
    billed, so it costs $0; counted apart from malformed input."""

    request_id: str
    timestamp: datetime
    model_id: str
    error_code: str


@dataclass(frozen=True, slots=True)
class QuarantinedRecord:
    """Input we could not trust. Kept with the reason; never counted as $0, never dropped."""

    reason: str
    raw: str
    source: str
    received_at: datetime


@dataclass(frozen=True, slots=True)
class Thresholds:
    alert: Decimal
    throttle: Decimal
    shutdown: Decimal

    def for_level(self, level: Level) -> Decimal:
        return {Level.ALERT: self.alert, Level.THROTTLE: self.throttle, Level.SHUTDOWN: self.shutdown}[level]

    def level_for(self, spend: Decimal) -> Level:
        for level in reversed(ESCALATION_LEVELS):
            if spend >= self.for_level(level):
                return level
        return Level.NORMAL

    def as_strings(self) -> dict[str, str]:
        return {lvl.label: str(self.for_level(lvl)) for lvl in ESCALATION_LEVELS}


@dataclass(frozen=True, slots=True)
class Budget:
    """What one scope may spend per window, and what each level does.

    `selector` is `global`, `<dimension>:*` (one budget per value, e.g. every app) or
    `<dimension>:<value>` (one exact scope). Dimensions: request metadata keys, or `caller`.
    """

    selector: str
    window: BudgetWindow
    thresholds: Thresholds
    targets: tuple[str, ...] = ()
    model_downgrades: dict[str, str] = field(default_factory=dict)
    shutdown_auto_clears: bool = False


@dataclass(frozen=True, slots=True)
class WindowRef:
    kind: WindowKind
    start: datetime
    end: datetime
    # Computed once: a window is a dict key and a table key many times per batch (datetime hashing and
    # formatting were a tenth of the ledger's CPU on a batch spread over a day).
    key: str = field(init=False, compare=False, repr=False)
    _hash: int = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", f"{self.kind}#{self.start.isoformat()}")
        object.__setattr__(self, "_hash", hash((self.kind, self.start, self.end)))

    def __hash__(self) -> int:
        return self._hash


CounterKey = tuple[str, WindowRef]  # (scope, window): one scope-window counter


@dataclass(frozen=True, slots=True)
class ScopeTotals:
    """Counters of one scope in one window, read back consistently after a write."""

    scope: str
    window: WindowRef
    spend: Decimal = ZERO
    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    breakdown: dict[str, Decimal] = field(default_factory=dict)  # "model:<id>", "app:<app>", "caller:<arn>"
    unconfirmed: Decimal = ZERO  # part of `spend` only a client reported: no invocation log confirmed it yet
    unconfirmed_requests: int = 0

    def spend_by(self, dimension: str) -> dict[str, Decimal]:
        prefix = f"{dimension}:"
        return {k.removeprefix(prefix): v for k, v in self.breakdown.items() if k.startswith(prefix)}

    @property
    def spend_by_model(self) -> dict[str, Decimal]:
        return self.spend_by("model")


TriggerKind = Literal["threshold", "alarm", "manual", "rollover", "reset"]


@dataclass(frozen=True, slots=True)
class Rearm:
    """After a reset, thresholds count from `baseline_spend` in `window_key`; or nothing escalates
    before `snooze_until`."""

    window_key: str
    baseline_spend: Decimal = ZERO
    snooze_until: datetime | None = None


@dataclass(frozen=True, slots=True)
class TargetState:
    """A shutdown target. `saved` is the reserved concurrency before we touched it: an int, or None
    meaning the function had no reserved concurrency (which is different from 0); for a role target None
    ("no deny": the guardrail's deny was not there). `refused`: a role with a policy of the guardrail's
    name that the guardrail did not put there (never overwritten)."""

    saved: int | None
    status: Literal["saved", "applied", "restored", "restore_failed", "missing", "refused"] = "saved"
    message: str = ""


@dataclass(frozen=True, slots=True)
class TargetHold:
    """One target function shared by every scope that stops it: its pre-guardrail reserved concurrency,
    saved once, and the scopes holding it at 0. `released` items are tombstones kept for a while after
    the last holder restored it, so a late 0 from a racing shutdown is found and undone."""

    function: str
    saved: int | None
    holders: frozenset[str] = frozenset()
    state: Literal["held", "released"] = "held"
    released_at: datetime | None = None
    rev: int = 0  # bumped by every write to the item: a write conditioned on it saw the item as it is
    observed: Observed | None = None  # the schedule run's last reading while nobody held it


@dataclass(frozen=True, slots=True)
class Observed:
    """A reading of a target taken by the schedule run while no scope held it, so a shutdown need not read it
    again: its pre-guardrail state (never a stop: a target found stopped is not recorded), when, and the
    item's `rev` it was written at (valid only while the item has not been written since)."""

    value: int | None
    at: datetime
    rev: int


@dataclass(frozen=True, slots=True)
class Flag:
    """The enforced state of one scope. Moves only by a conditional write on `version`."""

    scope: str
    level: Level = Level.NORMAL
    since: datetime | None = None
    trigger: TriggerKind = "threshold"
    reason: str = ""
    window_key: str = ""
    version: int = 0
    rearm: Rearm | None = None
    active_alarms: dict[str, Level] = field(default_factory=dict)
    model_downgrades: dict[str, str] = field(default_factory=dict)
    targets: dict[str, TargetState] = field(default_factory=dict)
    applied: bool = True  # effects done and notice sent; False: the schedule run finishes them
    previous_level: Level = Level.NORMAL  # the level before the last change (a repaired notice names it)


@dataclass(frozen=True, slots=True)
class Transition:
    """A decided change of one scope's level. `crossed` lists every level passed on the way up."""

    scope: str
    from_level: Level
    to_level: Level
    trigger: TriggerKind
    reason: str
    window_key: str
    spend: Decimal = ZERO
    crossed: tuple[Level, ...] = ()
    rearm: Rearm | None = None
    alarm: tuple[str, Level | None] | None = None

    @property
    def is_escalation(self) -> bool:
        return self.to_level > self.from_level


@dataclass(frozen=True, slots=True)
class AuditEntry:
    scope: str
    at: datetime
    actor: str
    action: str
    reason: str
    before: dict[str, Any]
    after: dict[str, Any]
    entry_id: str
