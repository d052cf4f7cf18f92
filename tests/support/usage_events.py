"""The `Bedrock Usage` details a usage event carries, whichever of its three shapes it has, read as the
usage function reads them (guardrail.core.usage_event): for tests that look at what a client sent."""

from __future__ import annotations

import json
from typing import Any

from guardrail.core.usage_event import (
    USAGE_BATCH_DETAIL_TYPE,
    USAGE_DETAIL_TYPE,
    USAGE_ROWS_DETAIL_TYPE,
    UsageRowsDetail,
    row_details,
)


def details_of(detail_type: str, detail: Any) -> list[dict[str, Any]]:
    if detail_type == USAGE_DETAIL_TYPE:
        return [detail]
    if detail_type == USAGE_BATCH_DETAIL_TYPE:
        return list(detail["reports"])
    assert detail_type == USAGE_ROWS_DETAIL_TYPE, detail_type
    out = []
    for i, _, usage in row_details(UsageRowsDetail.model_validate(detail)):
        assert not isinstance(usage, str), f"rows[{i}]: {usage}"
        out.append(usage)
    return out


def event_details(event: dict[str, Any]) -> list[dict[str, Any]]:
    """Of an EventBridge event, as a rule delivers it."""
    return details_of(event["detail-type"], event["detail"])


def entry_details(entry: dict[str, Any]) -> list[dict[str, Any]]:
    """Of a PutEvents entry, as the client puts it."""
    return details_of(entry["DetailType"], json.loads(entry["Detail"]))
