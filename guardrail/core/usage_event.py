"""The `Bedrock Usage` EventBridge events: the contract between the guarded client (which puts them) and
the usage function (which ingests them).

Two shapes: `Bedrock Usage`, one report per event (what clients before issue 19 send), and `Bedrock Usage
Batch`, whose detail packs several reports (`{"reports": [<a Bedrock Usage detail>, ...]}`): a PutEvents
costs the caller's process far more CPU than a report, and takes at most 10 entries.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from guardrail.core.models import Source, UsageRecord

USAGE_DETAIL_TYPE = "Bedrock Usage"
USAGE_BATCH_DETAIL_TYPE = "Bedrock Usage Batch"
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
