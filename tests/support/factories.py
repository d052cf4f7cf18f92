"""Builders for usage records and invocation-log events used across tests, demo-free."""

from __future__ import annotations

import base64
import gzip
import json
import zlib
from datetime import UTC, datetime
from typing import Any

from guardrail.core.models import UsageRecord
from guardrail.core.usage_event import (
    ROW_COLUMNS,
    USAGE_BATCH_DETAIL_TYPE,
    USAGE_DETAIL_TYPE,
    USAGE_EVENT_SOURCE,
    USAGE_ROWS_DETAIL_TYPE,
    UsageEventDetail,
)

SONNET_45_US = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
HAIKU_3 = "anthropic.claude-3-haiku-20240307-v1:0"


def record(
    request_id: str,
    *,
    model: str = SONNET_45_US,
    input_tokens: int = 1000,
    output_tokens: int = 100,
    cache_read: int = 0,
    cache_write: int = 0,
    at: datetime | None = None,
    app: str | None = None,
    tenant: str | None = None,
) -> UsageRecord:
    metadata = {k: v for k, v in {"app": app, "tenant": tenant}.items() if v}
    return UsageRecord(
        request_id=request_id,
        timestamp=at or datetime(2026, 11, 22, 10, 41, tzinfo=UTC),
        model_id=model,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
        metadata=metadata,
    )


def log_line(r: UsageRecord) -> str:
    """The invocation-log JSON Bedrock writes for a record."""
    return json.dumps(
        {
            "schemaType": "ModelInvocationLog",
            "schemaVersion": "1.0",
            "timestamp": r.timestamp.isoformat(),
            "accountId": "123456789012",
            "identity": {"arn": r.caller or "arn:aws:sts::123456789012:assumed-role/app/app"},
            "region": "us-east-1",
            "requestId": r.request_id,
            "operation": "Converse",
            "modelId": r.model_id,
            "input": {
                "inputContentType": "application/json",
                "inputTokenCount": r.input_tokens,
                "cacheReadInputTokenCount": r.cache_read_tokens,
                "cacheWriteInputTokenCount": r.cache_write_tokens,
            },
            "output": {"outputContentType": "application/json", "outputTokenCount": r.output_tokens},
            "requestMetadata": r.metadata,
        }
    )


def logs_event(lines: list[str], *, compression: str = "gzip") -> dict[str, Any]:
    """A CloudWatch Logs subscription event carrying `lines` as log events."""
    payload = json.dumps(
        {
            "messageType": "DATA_MESSAGE",
            "owner": "123456789012",
            "logGroup": "/aws/bedrock/modelinvocations",
            "logStream": "aws/bedrock/modelinvocations",
            "subscriptionFilters": ["guardrail-usage"],
            "logEvents": [
                {"id": str(i), "timestamp": int(datetime.now(UTC).timestamp() * 1000), "message": line}
                for i, line in enumerate(lines)
            ],
        }
    ).encode()
    data = gzip.compress(payload) if compression == "gzip" else zlib.compress(payload)
    return {"awslogs": {"data": base64.b64encode(data).decode()}}


def usage_event(r: UsageRecord) -> dict[str, Any]:
    """The `Bedrock Usage` EventBridge event a guarded client puts for a record."""
    return {
        "version": "0",
        "id": f"evt-{r.request_id}",
        "detail-type": USAGE_DETAIL_TYPE,
        "source": USAGE_EVENT_SOURCE,
        "account": "123456789012",
        "time": r.timestamp.isoformat(),
        "region": "us-east-1",
        "resources": [],
        "detail": UsageEventDetail.from_record(r).model_dump(mode="json"),
    }


def packed_usage_event(reports: list[UsageRecord | Any]) -> dict[str, Any]:
    """The `Bedrock Usage Batch` EventBridge event a guarded client puts for several reports (a record, or
    any detail as it is)."""
    details = [
        UsageEventDetail.from_record(r).model_dump(mode="json") if isinstance(r, UsageRecord) else r for r in reports
    ]
    return {
        "version": "0",
        "id": "evt-batch",
        "detail-type": USAGE_BATCH_DETAIL_TYPE,
        "source": USAGE_EVENT_SOURCE,
        "account": "123456789012",
        "time": "2026-11-22T10:41:00Z",
        "region": "us-east-1",
        "resources": [],
        "detail": {"reports": details},
    }


ROWS = ROW_COLUMNS  # the contract's columns, in the client's order


def rows_usage_event(records: list[UsageRecord], columns: tuple[str, ...] = ROWS) -> dict[str, Any]:
    """The `Bedrock Usage Rows` EventBridge event a guarded client puts for several reports: what they share
    (model, region, caller, metadata) once per context, each report a row of `columns` (any order; a column
    the records do not have is sent as "extra")."""
    contexts: list[dict[str, Any]] = []
    rows = []
    for r in records:
        context = {"modelId": r.model_id, "region": r.region, "caller": r.caller, "metadata": r.metadata}
        if context not in contexts:
            contexts.append(context)
        values = {
            "context": contexts.index(context),
            "requestId": r.request_id,
            "timestamp": r.timestamp.timestamp(),
            "inputTokens": r.input_tokens,
            "outputTokens": r.output_tokens,
            "cacheReadInputTokens": r.cache_read_tokens,
            "cacheWriteInputTokens": r.cache_write_tokens,
            "cacheWrite1hInputTokens": r.cache_write_1h_tokens,
            "serviceTier": r.service_tier,
            "latencyOptimized": r.latency_optimized,
            "partial": r.partial,
        }
        rows.append([values.get(c, "extra") for c in columns])
    return {
        "version": "0",
        "id": "evt-rows",
        "detail-type": USAGE_ROWS_DETAIL_TYPE,
        "source": USAGE_EVENT_SOURCE,
        "account": "123456789012",
        "time": "2026-11-22T10:41:00Z",
        "region": "us-east-1",
        "resources": [],
        "detail": {"columns": list(columns), "contexts": contexts, "rows": rows},
    }
