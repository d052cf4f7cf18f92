"""Usage in: the one path the usage function and a ledger-mode guarded client share.

records -> engine (ledger, transitions, effects applied by the engine's applier) -> one alert a day per
model priced at the ceiling rate.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from guardrail.core.models import UsageRecord

if TYPE_CHECKING:
    from guardrail.service.engine import IngestResult
    from guardrail.service.runtime import Runtime


def ingest_events(runtime: Runtime, events: Iterable[Mapping[str, Any]]) -> IngestResult:
    """Raw events (log subscriptions, the client's usage events of any shape) through the whole usage path."""
    return _after(runtime, runtime.engine.ingest_events(events))


def ingest_records(runtime: Runtime, records: Sequence[UsageRecord]) -> IngestResult:
    """Already-parsed usage records (a ledger-mode guarded client) through the whole usage path."""
    return _after(runtime, runtime.engine.ingest(records))


def _after(runtime: Runtime, result: IngestResult) -> IngestResult:
    if result.unknown_models:
        runtime.effects.alert_unknown_models(result.unknown_models, runtime.engine.now().date().isoformat())
    return result
