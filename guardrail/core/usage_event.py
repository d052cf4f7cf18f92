"""The `Bedrock Usage` EventBridge event: the contract between the guarded client (which puts it) and
the usage function (which ingests it)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from guardrail.core.models import Source, UsageRecord

USAGE_DETAIL_TYPE = "Bedrock Usage"
USAGE_EVENT_SOURCE = "guardrail.client"

Count = Annotated[int, Field(strict=True, ge=0)]


class UsageEventDetail(BaseModel):
    """`detail` of a `Bedrock Usage` EventBridge event, as the guarded client sends it."""

    model_config = ConfigDict(extra="ignore")
    requestId: Annotated[str, Field(min_length=1, max_length=256)]
    timestamp: datetime
    modelId: Annotated[str, Field(min_length=1, max_length=2048)]
    inputTokens: Count
    outputTokens: Count
    cacheReadInputTokens: Count = 0
    cacheWriteInputTokens: Count = 0
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
            region=record.region,
            caller=record.caller,
            metadata=record.metadata,
            partial=record.partial,
        )


def record_from_detail(usage: UsageEventDetail, source: Source) -> UsageRecord:
    return UsageRecord(
        request_id=usage.requestId,
        timestamp=usage.timestamp,
        model_id=usage.modelId,
        input_tokens=usage.inputTokens,
        output_tokens=usage.outputTokens,
        cache_read_tokens=usage.cacheReadInputTokens,
        cache_write_tokens=usage.cacheWriteInputTokens,
        region=usage.region,
        caller=usage.caller,
        metadata=usage.metadata,
        source=source,
        partial=usage.partial,
    )
