"""report="ledger" without an injected writer: the service's usage path (ledger, transitions, effects,
unknown-model alerts), loaded only when such a client is built, so that importing the client never loads
the service (an import-linter contract keeps the static imports one way)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from guardrail.core.errors import ConfigError
from guardrail.core.ports import LedgerWriter

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

    from guardrail.core.config import Settings


def service_ledger(settings: Settings, dynamodb: DynamoDBClient | None) -> LedgerWriter:
    """The service's LedgerWriter built from `settings` (and the client's DynamoDB client, if given)."""
    try:
        client_sink = importlib.import_module("guardrail.service.client_sink")
    except ImportError as exc:  # the light client install has no service
        raise ConfigError(
            "report='ledger' needs the guardrail service package (pip install 'bedrock-cost-guardrail[service]'), "
            "or pass ledger=... to guard(); report='events' needs neither"
        ) from exc
    writer: LedgerWriter = client_sink.ledger_writer(settings, dynamodb=dynamodb)
    return writer
