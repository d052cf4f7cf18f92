"""A usage report: one guarded call's usage, priced, as the reporter sends it; and its `Bedrock Usage` detail
as plain JSON, byte for byte what `UsageEventDetail.model_dump_json()` gives (the tests prove it), without
the model."""

from __future__ import annotations

import json
import math
import time
from datetime import UTC, datetime
from decimal import Decimal
from typing import NamedTuple

from guardrail.client.identity import CallerIdentity
from guardrail.client.units import to_decimal
from guardrail.client.usage import Usage
from guardrail.core.models import UsageRecord

# Compact and UTF-8 as pydantic's model_dump_json, so the detail is byte-compatible with UsageEventDetail.
_encode_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_quote = json.encoder.encode_basestring  # a JSON string, UTF-8 kept (C)
_JSON_BOOL = ("false", "true")


class UsageReport(NamedTuple):
    """One call's usage, priced; the UsageRecord is built on the reporter thread, off the hot path. `units`:
    the cost in units (guardrail.client.units), what local accounting settles.

    A tuple: the guarded call builds it with `tuple.__new__` (no Python call) and hands it to the queue's own
    put (`Reporter.enqueue`); how often the reporter tried to send it is the reporter's to count."""

    request_id: str
    model_id: str
    usage: Usage
    region: str
    caller: CallerIdentity
    metadata: dict[str, str]
    partial: bool
    at: float
    books: tuple[str, ...]
    units: int

    @property
    def cost(self) -> Decimal:
        """The call's cost in dollars."""
        return to_decimal(self.units)

    @property
    def record(self) -> UsageRecord:
        request_id, model_id, usage, region, caller, metadata, partial = self.fields
        return UsageRecord(
            request_id=request_id,
            timestamp=datetime.fromtimestamp(self.at, UTC),
            model_id=model_id,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cache_read_tokens=usage.cache_read_tokens,
            cache_write_tokens=usage.cache_write_tokens,
            cache_write_1h_tokens=usage.cache_write_1h_tokens,
            service_tier=usage.service_tier,
            latency_optimized=usage.latency_optimized,
            region=region,
            caller=caller.arn(),  # resolved here, on the reporting thread, at most once per process
            metadata=metadata,
            source="client",
            partial=partial,
        )

    @property
    def fields(self) -> tuple[str, str, Usage, str, CallerIdentity, dict[str, str], bool]:
        """request id, model id, usage, region, caller, metadata, partial"""
        return self[:7]

    def timestamp(self) -> datetime:
        return datetime.fromtimestamp(self.at, UTC)

    def detail_json(self) -> str:
        """The `Bedrock Usage` event detail: `UsageEventDetail.from_record(self.record).model_dump_json()`,
        without building either model (the hot path of the reporter thread). Field order, spacing and
        escaping are pydantic's; the tests compare the two byte for byte."""
        request_id, model_id, usage, region, caller, metadata, partial = self.fields
        return (
            f'{{"requestId":{_quote(request_id)},"timestamp":"{_stamp(self.at)}","modelId":{_quote(model_id)},'
            f'"inputTokens":{usage.input_tokens},"outputTokens":{usage.output_tokens},'
            f'"cacheReadInputTokens":{usage.cache_read_tokens},"cacheWriteInputTokens":{usage.cache_write_tokens},'
            f'"cacheWrite1hInputTokens":{usage.cache_write_1h_tokens},"serviceTier":{_quote(usage.service_tier)},'
            f'"latencyOptimized":{_JSON_BOOL[usage.latency_optimized]},'
            f'{_tail(region, caller.arn(), metadata)},"partial":{_JSON_BOOL[partial]}}}'
        )


_second: list[tuple[int, str]] = [(-1, "")]  # the last whole second formatted, and its text


def _stamp(at: float) -> str:
    """`datetime.fromtimestamp(at, UTC)` as pydantic writes it (`2026-11-24T00:25:57.123456Z`, no fraction
    when it is 0), without a datetime: the microseconds rounded half to even as datetime does, the date
    and time formatted once per second."""
    fraction, whole = math.modf(at)
    micro = round(fraction * 1e6)
    second = int(whole)
    if micro >= 1_000_000:
        micro -= 1_000_000
        second += 1
    elif micro < 0:
        micro += 1_000_000
        second -= 1
    cached = _second[0]
    if cached[0] != second:
        cached = _second[0] = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
    # %-formatting: about half the cost of an f-string's format spec here, once per report
    return "%s.%06dZ" % (cached[1], micro) if micro else cached[1] + "Z"  # noqa: UP031


# region, caller and metadata are the same on almost every report of a client: their JSON is kept, keyed by
# the metadata object's identity (the client's own dict, never mutated; the entry holds it, so its id cannot
# be reused while cached) and checked against the region and caller.
_tails: dict[int, tuple[dict[str, str], str, str, str]] = {}
_MAX_TAILS = 64


def _tail(region: str, caller_arn: str, metadata: dict[str, str]) -> str:
    """`"region":...,"caller":...,"metadata":{...}` of a detail. caller.arn() is resolved on the reporting
    thread, at most once per process."""
    cached = _tails.get(id(metadata))
    if cached is not None and cached[0] is metadata and cached[1] == region and cached[2] == caller_arn:
        return cached[3]
    text = f'"region":{_quote(region)},"caller":{_quote(caller_arn)},"metadata":{_encode_json(metadata)}'
    if len(_tails) >= _MAX_TAILS:
        _tails.clear()  # per-call metadata (requestMetadata) makes a new dict per call: keep the cache small
    _tails[id(metadata)] = (metadata, region, caller_arn, text)
    return text
