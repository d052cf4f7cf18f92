"""The `Bedrock Usage` EventBridge events: the contract between the guarded client (which puts them) and
the usage function (which ingests them).

Three shapes, all heard by the usage function:
- `Bedrock Usage`: one report per event (what clients before issue 19 send, and `report_packing=1`);
- `Bedrock Usage Batch`: several reports, `{"reports": [<a Bedrock Usage detail>, ...]}` (issue 19's clients);
- `Bedrock Usage Rows`: several reports as rows (what the client sends now). What the reports of an event
  share (model, region, caller, metadata) is written once, as a context; each report is a row of values:

      {"columns": ["context", "requestId", "timestamp", ...], "contexts": [{"modelId": ..., ...}],
       "rows": [[0, "<request id>", 1795504255.9751248, ...], ...]}

  A row is the detail `{**contexts[row.context], **dict(zip(columns, row))}` minus `context`, its
  `timestamp` in epoch seconds (the client's float, read back to the same microsecond). A PutEvents costs
  the caller's process CPU per byte and per report it renders: rows are a quarter of the bytes of
  packed details, and rendered for a whole entry by one call (guardrail.client.event_sink).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from guardrail.core.models import Source, UsageRecord

USAGE_DETAIL_TYPE = "Bedrock Usage"
USAGE_BATCH_DETAIL_TYPE = "Bedrock Usage Batch"
USAGE_ROWS_DETAIL_TYPE = "Bedrock Usage Rows"
USAGE_DETAIL_TYPES = (USAGE_DETAIL_TYPE, USAGE_BATCH_DETAIL_TYPE, USAGE_ROWS_DETAIL_TYPE)  # what the stack hears
# A row's values, as the client writes them: the context's index, then a report's own fields (the Usage tuple's
# order: guardrail.client.usage). `context` and `requestId` are required in any `columns`.
ROW_COLUMNS = (
    "context",
    "requestId",
    "timestamp",
    "inputTokens",
    "outputTokens",
    "cacheReadInputTokens",
    "cacheWriteInputTokens",
    "cacheWrite1hInputTokens",
    "serviceTier",
    "latencyOptimized",
    "partial",
)
USAGE_EVENT_SOURCE = "guardrail.client"
# EventBridge: at most 10 entries and 256 KB per PutEvents (an entry counts its Time as 14 bytes, its
# Source, DetailType and Detail as UTF-8 bytes).
MAX_ENTRIES_PER_PUT = 10
MAX_PUT_EVENTS_BYTES = 256 * 1024

Count = Annotated[int, Field(strict=True, ge=0)]


class UsageEventDetail(BaseModel):
    """`detail` of a `Bedrock Usage` EventBridge event, as the guarded client sends it."""

    # Built on first use: a usage function's cold start on invocation logs never needs it.
    model_config = ConfigDict(extra="ignore", defer_build=True)
    requestId: Annotated[str, Field(min_length=1, max_length=256)]
    timestamp: datetime
    modelId: Annotated[str, Field(min_length=1, max_length=2048)]
    inputTokens: Count
    outputTokens: Count
    cacheReadInputTokens: Count = 0
    cacheWriteInputTokens: Count = 0
    cacheWrite1hInputTokens: Count = 0  # the part of cacheWriteInputTokens written with a 1-hour TTL
    serviceTier: str = ""
    latencyOptimized: bool = False
    region: str = ""
    caller: str = ""
    metadata: dict[str, str] = Field(default_factory=dict)
    partial: bool = False

    @classmethod
    def from_record(cls, record: UsageRecord) -> UsageEventDetail:
        return cls(
            requestId=record.request_id,
            timestamp=record.timestamp,
            modelId=record.model_id,
            inputTokens=record.input_tokens,
            outputTokens=record.output_tokens,
            cacheReadInputTokens=record.cache_read_tokens,
            cacheWriteInputTokens=record.cache_write_tokens,
            cacheWrite1hInputTokens=record.cache_write_1h_tokens,
            serviceTier=record.service_tier,
            latencyOptimized=record.latency_optimized,
            region=record.region,
            caller=record.caller,
            metadata=record.metadata,
            partial=record.partial,
        )


class UsageBatchDetail(BaseModel):
    """`detail` of a `Bedrock Usage Batch` event: each report is validated on its own (as a
    `UsageEventDetail`), so one bad report is quarantined alone and the others still count."""

    model_config = ConfigDict(extra="ignore", defer_build=True)
    reports: list[Any]


class UsageRowsDetail(BaseModel):
    """`detail` of a `Bedrock Usage Rows` event. Only the frame is checked here; each row is turned into a
    detail (`row_details`) and validated on its own, so one bad row is quarantined alone."""

    model_config = ConfigDict(extra="ignore", defer_build=True)
    columns: list[str]
    contexts: list[Any]
    rows: list[Any]

    @field_validator("columns")
    @classmethod
    def _named_once(cls, columns: list[str]) -> list[str]:
        missing = [c for c in ("context", "requestId") if c not in columns]
        if missing:
            raise ValueError(f"no {' or '.join(missing)} column")
        if len(set(columns)) != len(columns):
            raise ValueError("a column is named twice")
        return columns


def row_details(rows: UsageRowsDetail) -> Iterator[tuple[int, dict[str, Any], dict[str, Any] | str]]:
    """Each row: its index, what to keep of it if it is bad (`{"context": <the context it names, or None>,
    "row": <the row as sent>}`: everything the row said), and the `Bedrock Usage` detail it stands for (its
    context's fields, then its own; an epoch-seconds timestamp as the datetime the client meant), or why it
    is none."""
    columns, contexts = rows.columns, rows.contexts
    where = columns.index("context")
    for i, row in enumerate(rows.rows):
        if not isinstance(row, list) or len(row) != len(columns):
            yield i, {"context": None, "row": row}, f"not a row of {len(columns)} values"
            continue
        at = row[where]
        context = contexts[at] if type(at) is int and 0 <= at < len(contexts) else None
        kept = {"context": context, "row": row}
        if not isinstance(context, Mapping):
            yield i, kept, f"context {at!r} is not one of the event's {len(contexts)} context objects"
            continue
        fields = dict(zip(columns, row, strict=True))
        del fields["context"]
        detail = {**context, **fields}
        when = detail.get("timestamp")
        if type(when) is int or type(when) is float:
            try:
                detail["timestamp"] = datetime.fromtimestamp(when, UTC)  # as the client's record has it
            except (OverflowError, OSError, ValueError):
                yield i, kept, f"timestamp {when!r} is not a time (epoch seconds)"
                continue
        yield i, kept, detail


def record_from_detail(usage: UsageEventDetail, source: Source) -> UsageRecord:
    return UsageRecord(
        request_id=usage.requestId,
        timestamp=usage.timestamp,
        model_id=usage.modelId,
        input_tokens=usage.inputTokens,
        output_tokens=usage.outputTokens,
        cache_read_tokens=usage.cacheReadInputTokens,
        cache_write_tokens=usage.cacheWriteInputTokens,
        cache_write_1h_tokens=min(usage.cacheWrite1hInputTokens, usage.cacheWriteInputTokens),
        service_tier=tier_name(usage.serviceTier),
        latency_optimized=usage.latencyOptimized,
        region=usage.region,
        caller=usage.caller,
        metadata=usage.metadata,
        source=source,
        partial=usage.partial,
    )


def one_hour_cache_writes(usage: Any) -> int:
    """Cache writes with a 1-hour TTL in a response `usage`: Converse `cacheDetails` ([{ttl: "1h",
    inputTokens}]) or Anthropic's `cache_creation.ephemeral_1h_input_tokens`; 0 when it says nothing
    (the writes are then priced at the 5-minute rate)."""
    if not isinstance(usage, Mapping):
        return 0
    details = usage.get("cacheDetails")
    if isinstance(details, list):
        return sum(
            d["inputTokens"]
            for d in details
            if isinstance(d, Mapping)
            and d.get("ttl") == "1h"
            and type(d.get("inputTokens")) is int
            and d["inputTokens"] > 0
        )
    creation = usage.get("cache_creation")
    n = creation.get("ephemeral_1h_input_tokens") if isinstance(creation, Mapping) else None
    return n if type(n) is int and n > 0 else 0


PRICED_TIERS = ("priority", "flex", "batch", "reserved")  # "default" (standard) prices as no tier


def tier_name(value: Any) -> str:
    """A service tier as Bedrock names it (Converse `{"type": "priority"}`, the InvokeModel header's
    string); "" for the standard tier or anything unknown."""
    tier = value.get("type") if isinstance(value, Mapping) else value
    return tier.lower() if isinstance(tier, str) and tier.lower() in PRICED_TIERS else ""
