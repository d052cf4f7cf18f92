"""The service side of a ledger-mode guarded client: the same usage path as the usage function, so a
transition the client wins is applied at once (alert sent, targets stopped), not at the next schedule run.

    from guardrail.client import ClientOptions, guard
    from guardrail.service.client_sink import ledger_writer
    bedrock = guard(client, options=ClientOptions(report="ledger"), ledger=ledger_writer())
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from guardrail.core.models import UsageRecord
from guardrail.core.ports import LedgerWrite
from guardrail.service.ingest import ingest_records
from guardrail.service.runtime import Runtime, build

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

    from guardrail.core.config import Settings


class RuntimeLedgerWriter:
    """A LedgerWriter over a service runtime (engine with its effects, notifier, clients)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def write(self, records: Sequence[UsageRecord]) -> LedgerWrite:
        result = ingest_records(self.runtime, records)
        return LedgerWrite(
            totals={(t.scope, t.window): t for t in result.totals.values()},
            flags=[committed.after for committed in result.transitions],
        )


def ledger_writer(settings: Settings | None = None, *, dynamodb: DynamoDBClient | None = None) -> RuntimeLedgerWriter:
    """A writer on a runtime built from `settings` (default: the GUARDRAIL_* environment)."""
    clients = {"dynamodb": dynamodb} if dynamodb is not None else None
    return RuntimeLedgerWriter(build(settings, clients=clients))
