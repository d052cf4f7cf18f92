"""How a guarded client reads flags and reports usage (one frozen options object per client)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from guardrail.client.flag_cache import FailMode
from guardrail.core.downgrade import KNOWN_MODELS

ReportMode = Literal["events", "ledger"]


@dataclass(frozen=True, slots=True)
class ClientOptions:
    """How the guarded client reads flags and reports usage.

    report: "events" puts a `Bedrock Usage` event on `event_bus` (the usage handler ingests it; None: the
        `GUARDRAIL_USAGE_EVENT_BUS` setting, the guardrail's own bus);
        "ledger" writes the ledger directly through the engine (needs write access to the table) and
        learns the new totals at once.
    flag_ttl: seconds a flag read is reused. max_stale: seconds a last known flag is served while the
        store is unreachable; after that `fail_mode` "open" lets calls through (logged at ERROR) and
        "closed" refuses them. flag_read_timeout: the longest a caller ever waits for the flag store.
    reserve_in_flight: count requests in flight (at this process's recent mean cost per model) in local
        accounting, which bounds overshoot to less than one request's cost per process.
    background: report on a background thread (False: inline, before the call returns).
    report_linger: report="events" in the background: the longest a report waits for others to share its
        PutEvents (up to 10 per call; each call costs the process far more CPU than a report); a flush,
        close or exit sends at once.
    report_packing: report="events": usage reports packed into one EventBridge entry (a `Bedrock Usage
        Rows` event, up to 10 entries and 256 KB per PutEvents). 1 sends one `Bedrock Usage` event per
        report, which every stack hears: use it while the stack is older than the client (an older stack's
        rule does not hear `Bedrock Usage Rows`, and those reports would reach the ledger only through the
        invocation log).
    exit_flush_seconds: at process exit, the longest the client waits to send what is unsent (open
        streams are reported first, partial); what still cannot be sent is logged with its request ids.
    tag_requests: add the client's metadata to Converse `requestMetadata`, so the invocation log of the
        same request counts towards the same scopes.
    leases: spend only from budget leases, slices of each scope's headroom to its shutdown threshold
        leased from the table, so that all processes together stop at the threshold (docs/leases.md).
        Off by default. lease_ttl: seconds a slice is valid (a crashed process's slice returns after
        it); lease_divisor: a slice is the headroom divided by this (about 2 x the processes sharing a
        scope), between lease_min_slice and lease_max_slice dollars; lease_wait: seconds a call waits
        for a slice when the headroom is all leased (0: refused at once, like at shutdown).
    """

    report: ReportMode = "events"
    event_bus: str | None = None
    flag_ttl: float = 1.0
    max_stale: float = 300.0
    fail_mode: FailMode = "open"
    flag_read_timeout: float = 1.0
    reserve_in_flight: bool = True
    background: bool = True
    report_linger: float = 0.2
    report_packing: int = 200
    tag_requests: bool = True
    known_models: tuple[str, ...] = KNOWN_MODELS
    max_report_attempts: int = 5
    exit_flush_seconds: float = 5.0
    leases: bool = False
    lease_ttl: float = 30.0
    lease_divisor: int = 16
    lease_min_slice: Decimal = Decimal("0.01")
    lease_max_slice: Decimal = Decimal(5)
    lease_wait: float = 0.0
