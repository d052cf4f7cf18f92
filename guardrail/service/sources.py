"""Turn raw input into usage records: Bedrock model invocation log records (via a CloudWatch Logs
subscription) and `Bedrock Usage` / `Bedrock Usage Batch` EventBridge events from the guarded client.

Nothing here raises on bad input: every record that cannot be trusted becomes a `QuarantinedRecord`
with the reason, so the good records of the same batch still count and the bad ones are kept.
"""

from __future__ import annotations

import base64
import json
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from guardrail.core import price_table
from guardrail.core.models import FailedRequest, QuarantinedRecord, UsageRecord
from guardrail.core.pricing import resource_of
from guardrail.core.usage_event import (
    USAGE_BATCH_DETAIL_TYPE,
    USAGE_DETAIL_TYPE,
    USAGE_ROWS_DETAIL_TYPE,
    UsageBatchDetail,
    UsageEventDetail,
    UsageRowsDetail,
    one_hour_cache_writes,
    record_from_detail,
    row_details,
    tier_name,
)
from guardrail.store.table import MAX_KEY_TEXT_BYTES

RAW_KEEP_CHARS = 8192  # what a quarantine item keeps of the offending input
# Timestamps outside these cannot be a Bedrock request (and would overflow calendar windows).
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)

Count = Annotated[int, Field(strict=True, ge=0)]
# Text that ends up in a DynamoDB key (scopes are `<metadata key>:<value>` or `caller:<arn>`; keys hold at
# most 2,048 bytes with their prefix): longer text can never be stored as it is.
MAX_METADATA_KEY_BYTES = 128
MAX_CALLER_BYTES = 1024


class _Input(BaseModel):
    model_config = ConfigDict(extra="ignore")
    inputTokenCount: Count | None = None  # absent on failed requests and per-image/video models
    cacheReadInputTokenCount: Count = 0
    cacheWriteInputTokenCount: Count = 0


class _Output(BaseModel):
    model_config = ConfigDict(extra="ignore")
    outputTokenCount: Count | None = None
    outputBodyJson: Any = None  # present when body logging is on: cache TTLs and service tier live here


class _Performance(BaseModel):
    model_config = ConfigDict(extra="ignore")
    latency: str = ""


class _Identity(BaseModel):
    model_config = ConfigDict(extra="ignore")
    arn: str = ""


class InvocationLogRecord(BaseModel):
    """The fields of a Bedrock ModelInvocationLog record that pricing needs."""

    model_config = ConfigDict(extra="ignore")
    schemaType: Literal["ModelInvocationLog"] = "ModelInvocationLog"
    requestId: Annotated[str, Field(min_length=1, max_length=256)]
    timestamp: datetime
    modelId: Annotated[str, Field(min_length=1, max_length=2048)]
    region: str = ""
    identity: _Identity = _Identity()
    input: _Input | None = None
    output: _Output | None = None
    requestMetadata: dict[str, str] = Field(default_factory=dict)
    errorCode: str | None = None
    performanceConfig: _Performance | None = None  # None, not a default instance: pydantic would copy it per record
    serviceTier: Any = None


@dataclass
class ParseResult:
    records: list[UsageRecord] = field(default_factory=list)
    quarantined: list[QuarantinedRecord] = field(default_factory=list)
    failed: list[FailedRequest] = field(default_factory=list)

    def extend(self, other: ParseResult) -> None:
        self.records.extend(other.records)
        self.quarantined.extend(other.quarantined)
        self.failed.extend(other.failed)


class RecordParser:
    """Validates records against the schema and the sanity bound on token counts."""

    def __init__(self, max_tokens_per_request: int = 5_000_000) -> None:
        self.max_tokens = max_tokens_per_request

    def quarantine(self, reason: str, raw: Any, source: str) -> QuarantinedRecord:
        text = raw if isinstance(raw, str) else json.dumps(raw, default=str, ensure_ascii=False)
        return QuarantinedRecord(
            reason=storable(reason[:1000]),
            raw=storable(text[:RAW_KEEP_CHARS]),
            source=source,
            received_at=datetime.now(UTC),
        )

    def _check(self, record: UsageRecord) -> str | None:
        problem = _text_problem(record)
        if problem:
            return problem
        counts = (
            record.input_tokens,
            record.output_tokens,
            record.cache_read_tokens,
            record.cache_write_tokens,
        )
        if max(counts) > self.max_tokens:
            return f"absurd token count {max(counts)} (limit {self.max_tokens} per request)"
        if record.timestamp.tzinfo is None:
            return "timestamp has no time zone"
        if not EARLIEST <= record.timestamp <= LATEST:
            return f"timestamp {record.timestamp.isoformat()} out of range ({EARLIEST.year} to {LATEST.year})"
        return None

    def _accept(self, result: ParseResult, record: UsageRecord, raw: Any, source: str) -> None:
        problem = self._check(record)
        if problem:
            result.quarantined.append(self.quarantine(problem, raw, source))
        else:
            result.records.append(record)

    def invocation_log_line(self, line: str, result: ParseResult, source: str = "invocation-log") -> None:
        """One log event `message`: a JSON ModelInvocationLog record."""
        try:
            log = InvocationLogRecord.model_validate_json(line)
        except ValidationError as exc:
            retried = _lenient(line) if any(e["type"] == "json_invalid" for e in exc.errors()) else None
            if retried is None:
                result.quarantined.append(self.quarantine(_describe(exc), line, source))
                return
            log = retried  # e.g. a lone surrogate escape: parsed, so its own check can name the problem
        inp, out = log.input or _Input(), log.output or _Output()
        in_count, out_count = inp.inputTokenCount, out.outputTokenCount
        if in_count is None or out_count is None:
            if log.errorCode:  # refused or failed: AWS bills nothing; not malformed either
                result.failed.append(FailedRequest(log.requestId, log.timestamp, log.modelId, log.errorCode[:256]))
                return
            if not _not_token_billed(log.modelId):
                missing = "input.inputTokenCount" if in_count is None else "output.outputTokenCount"
                result.quarantined.append(self.quarantine(f"{missing}: Field required", line, source))
                return
            in_count, out_count = in_count or 0, out_count or 0  # billed per image / second / hour
        record = UsageRecord(
            request_id=log.requestId,
            timestamp=log.timestamp,
            model_id=log.modelId,
            input_tokens=in_count,
            output_tokens=out_count,
            cache_read_tokens=inp.cacheReadInputTokenCount,
            cache_write_tokens=inp.cacheWriteInputTokenCount,
            region=log.region,
            caller=log.identity.arn,
            metadata=log.requestMetadata,
            source="invocation-log",
        )
        if out.outputBodyJson is not None or log.serviceTier is not None or log.performanceConfig is not None:
            record = _with_billing_details(record, log, out.outputBodyJson)
        self._accept(result, record, line, source)

    def cloudwatch_logs_event(self, event: Mapping[str, Any]) -> ParseResult:
        """A CloudWatch Logs subscription event (`{"awslogs": {"data": base64(gzip|zlib(json))}}`)."""
        result = ParseResult()
        try:
            decoded = _decode_subscription(event)
        except (ValueError, TypeError, KeyError, RecursionError, zlib.error) as exc:
            result.quarantined.append(self.quarantine(f"undecodable log subscription event: {exc}", event, "logs"))
            return result
        if decoded["messageType"] != "DATA_MESSAGE":
            return result  # CONTROL_MESSAGE: CloudWatch Logs checking the destination is reachable
        for log_event in decoded["logEvents"]:
            message = log_event["message"]
            self.invocation_log_line(message if isinstance(message, str) else str(message), result)
        return result

    def usage_event(self, event: Mapping[str, Any]) -> ParseResult:
        """An EventBridge `Bedrock Usage` event from the guarded client."""
        result = ParseResult()
        detail = event.get("detail") if isinstance(event, Mapping) else None
        if not isinstance(detail, Mapping):
            result.quarantined.append(self.quarantine("usage event has no detail object", event, "client"))
            return result
        try:
            usage = UsageEventDetail.model_validate(detail)
        except ValidationError as exc:
            result.quarantined.append(self.quarantine(_describe(exc), event, "client"))
            return result
        self._accept(result, record_from_detail(usage, "event"), event, "client")
        return result

    def usage_batch_event(self, event: Mapping[str, Any]) -> ParseResult:
        """An EventBridge `Bedrock Usage Batch` event: each packed report is checked exactly like the detail
        of a `Bedrock Usage` event; a bad one is quarantined alone (with its index), the others count."""
        result = ParseResult()
        detail = event.get("detail") if isinstance(event, Mapping) else None
        try:
            batch = UsageBatchDetail.model_validate(detail)
        except ValidationError as exc:
            result.quarantined.append(self.quarantine(f"usage batch: {_describe(exc)}", event, "client"))
            return result
        for i, report in enumerate(batch.reports):
            if not isinstance(report, Mapping):
                reason = f"usage batch reports[{i}]: not a usage report object"
                result.quarantined.append(self.quarantine(reason, report, "client"))
                continue
            self._packed_report(result, f"usage batch reports[{i}]", report)
        return result

    def usage_rows_event(self, event: Mapping[str, Any]) -> ParseResult:
        """An EventBridge `Bedrock Usage Rows` event: each row is checked exactly like the detail of a
        `Bedrock Usage` event (the detail it stands for); a bad one is quarantined alone (with its index, and
        its context's fields, so that what is kept says everything the row did), the others count."""
        result = ParseResult()
        detail = event.get("detail") if isinstance(event, Mapping) else None
        try:
            rows = UsageRowsDetail.model_validate(detail)
        except ValidationError as exc:
            result.quarantined.append(self.quarantine(f"usage rows: {_describe(exc)}", event, "client"))
            return result
        for i, kept, usage_detail in row_details(rows):
            if isinstance(usage_detail, str):
                result.quarantined.append(self.quarantine(f"usage rows rows[{i}]: {usage_detail}", kept, "client"))
                continue
            self._packed_report(result, f"usage rows rows[{i}]", usage_detail)
        return result

    def _packed_report(self, result: ParseResult, where: str, detail: Mapping[str, Any]) -> None:
        """One report of a packed event, checked like a `Bedrock Usage` detail; quarantined alone, `where` in
        its reason."""
        try:
            usage = UsageEventDetail.model_validate(detail)
        except ValidationError as exc:
            result.quarantined.append(self.quarantine(f"{where}: {_describe(exc)}", detail, "client"))
            return
        self._accept(result, record_from_detail(usage, "event"), detail, "client")

    def events(self, events: Iterable[Mapping[str, Any]]) -> ParseResult:
        """Any mix of the shapes (what the usage handler and the demo receive)."""
        result = ParseResult()
        for event in events:
            if isinstance(event, Mapping) and "awslogs" in event:
                result.extend(self.cloudwatch_logs_event(event))
            elif isinstance(event, Mapping) and event.get("detail-type") == USAGE_DETAIL_TYPE:
                result.extend(self.usage_event(event))
            elif isinstance(event, Mapping) and event.get("detail-type") == USAGE_BATCH_DETAIL_TYPE:
                result.extend(self.usage_batch_event(event))
            elif isinstance(event, Mapping) and event.get("detail-type") == USAGE_ROWS_DETAIL_TYPE:
                result.extend(self.usage_rows_event(event))
            else:
                result.quarantined.append(self.quarantine("not a log subscription or usage event", event, "unknown"))
        return result


def _decode_subscription(event: Mapping[str, Any]) -> dict[str, Any]:
    """The envelope as CloudWatch Logs sends it, checked only for what ingest reads (no model per log
    event: each line is validated on its own)."""
    data = event["awslogs"]["data"]
    if not isinstance(data, str | bytes):
        raise TypeError(f"awslogs.data is {type(data).__name__}, not base64 text")
    decoded = json.loads(zlib.decompress(base64.b64decode(data), zlib.MAX_WBITS | 32))
    if not isinstance(decoded, dict) or not isinstance(decoded.get("messageType"), str):
        raise ValueError("no messageType in the decoded data")
    events = decoded.get("logEvents")
    if decoded["messageType"] == "DATA_MESSAGE" and (
        not isinstance(events, list) or not all(isinstance(e, dict) and "message" in e for e in events)
    ):
        raise ValueError("logEvents is not a list of log events with a message")
    return decoded


def _not_token_billed(model_id: str) -> bool:
    if resource_of(model_id)[0] == "provisioned-model":
        return True
    row = price_table.find(price_table.SUPPLEMENTAL, resource_of(model_id)[1])
    return row is not None and row.billing != "token"


def _get(body: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(body, Mapping):
            return None
        body = body.get(key)
    return body


def _with_billing_details(record: UsageRecord, log: InvocationLogRecord, body: Any) -> UsageRecord:
    """What changes the price beyond the token counts, where the record says it: the 1-hour share of
    cache writes (only in a logged body), the service tier, latency-optimized inference."""
    latency = log.performanceConfig.latency if log.performanceConfig else ""
    return replace(
        record,
        cache_write_1h_tokens=min(one_hour_cache_writes(_get(body, "usage")), record.cache_write_tokens),
        service_tier=tier_name(log.serviceTier) or tier_name(_get(body, "serviceTier")),
        latency_optimized="optimized" in (latency, _get(body, "performanceConfig", "latency")),
    )


def storable(text: str) -> str:
    """Text DynamoDB accepts: a lone surrogate (not valid UTF-8) is kept visible as `\\udxxx`."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _text_problem(record: UsageRecord) -> str | None:
    """Why a record's text can never be stored as it is (checked before anything is written): first any
    text that is not UTF-8, then any text too long for a key. Each text is encoded once."""
    metadata = record.metadata
    if (  # the usual record: ASCII only (a character is a byte, no lone surrogate), every text short enough
        "".join(
            (record.request_id, record.model_id, record.region, record.caller, *metadata, *metadata.values())
        ).isascii()
        and len(record.caller) <= MAX_CALLER_BYTES
        and all(len(k) <= MAX_METADATA_KEY_BYTES and len(v) <= MAX_KEY_TEXT_BYTES for k, v in metadata.items())
    ):
        return None
    return _first_text_problem(record)


def _first_text_problem(record: UsageRecord) -> str | None:
    texts = [("requestId", record.request_id, 0), ("modelId", record.model_id, 0), ("region", record.region, 0)]
    texts.append(("identity.arn", record.caller, MAX_CALLER_BYTES))
    for key, value in record.metadata.items():
        texts += [("requestMetadata key", key, MAX_METADATA_KEY_BYTES), ("", value, MAX_KEY_TEXT_BYTES)]
    oversized: tuple[str, int, int] | None = None
    for i, (name, text, limit) in enumerate(texts):
        try:
            size = len(text) if text.isascii() else len(text.encode("utf-8"))
        except UnicodeEncodeError:
            name = name or _value_name(texts[i - 1][1])
            return f"{name} is not valid UTF-8 text (a lone surrogate); DynamoDB cannot store it"
        if limit and size > limit and oversized is None:
            oversized = (name or f"requestMetadata[{texts[i - 1][1][:64]!r}]", size, limit)
    if oversized is not None:
        name, size, limit = oversized
        return f"{name} is {size} bytes, over the {limit} bytes a ledger key can hold"
    return None


def _value_name(key: str) -> str:
    return f"requestMetadata[{storable(key)[:64]!r}]"


def _lenient(line: str) -> InvocationLogRecord | None:
    """Python's JSON parser accepts what the strict one refuses (lone surrogate escapes)."""
    try:
        return InvocationLogRecord.model_validate(json.loads(line))
    except (ValueError, ValidationError):
        return None


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err["loc"]) or "record"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)
