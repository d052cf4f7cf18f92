"""The `report="events"` sink: usage reports as EventBridge events, packed several to an entry.

`Bedrock Usage Rows` events of up to `packing` reports each (or one `Bedrock Usage` event per report with
packing 1), at most 10 entries and 256 KB per PutEvents. A PutEvents costs the caller's process about
0.35 ms of botocore CPU plus about 3 us per KB (serialised, escaped, signed and hashed), far more than a
report: packing is what keeps a guarded call's CPU low (benchmarks/bench_client_overhead.py). Rows keep
both parts small: what the reports of an entry share is written once, and an entry is rendered by one
call to pydantic-core's JSON writer (about 0.4 us per report, where a report's own JSON text took 1.5).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from pydantic_core import PydanticSerializationError, to_json

from guardrail.client.local_spend import LocalSpend
from guardrail.core.usage_event import (
    MAX_ENTRIES_PER_PUT,
    MAX_PUT_EVENTS_BYTES,
    ROW_COLUMNS,
    USAGE_DETAIL_TYPE,
    USAGE_EVENT_SOURCE,
    USAGE_ROWS_DETAIL_TYPE,
)

if TYPE_CHECKING:
    from mypy_boto3_events import EventBridgeClient

    from guardrail.client.usage_report import UsageReport

logger = logging.getLogger("guardrail.client")


def reporter_events_client() -> EventBridgeClient:
    """The EventBridge client the reporter builds for itself, cheap per PutEvents: no second parameter
    validation (the entries are built to botocore's model; the tests validate them), and a fixed User-Agent
    (botocore otherwise rebuilds its long one on every request, a fifth of a PutEvents' CPU)."""
    from guardrail.store import aws_clients

    # boto3 appends its own `Botocore/<version>` to a configured User-Agent.
    events: EventBridgeClient = aws_clients.client(
        "events", parameter_validation=False, user_agent="bedrock-cost-guardrail-client"
    )
    return events


class EventSink:
    """Usage events on EventBridge. With `packing` > 1, `Bedrock Usage Rows` events of up to `packing`
    reports each; with 1, one `Bedrock Usage` event per report (what any stack hears). A PutEvents holds up
    to 10 entries and at most `max_bytes` (EventBridge's 256 KB, counting every entry's Time, Source,
    DetailType, Detail and bus name): an entry that would pass it is split in two until it fits, and a
    report too big to share goes alone."""

    def __init__(
        self,
        events: EventBridgeClient,
        bus: str,
        spend: LocalSpend,
        timer: Callable[[], float],
        *,
        packing: int = 1,
        max_bytes: int = MAX_PUT_EVENTS_BYTES,
    ) -> None:
        if packing < 1:
            raise ValueError(f"report_packing must be at least 1, not {packing}")
        self.events = events
        self.bus = bus
        self.spend = spend
        self.timer = timer
        self.packing = packing
        self.max_bytes = max_bytes
        self.detail_type = USAGE_ROWS_DETAIL_TYPE if packing > 1 else USAGE_DETAIL_TYPE
        # An entry's bytes besides its detail: Time (14, as EventBridge counts it), Source, DetailType, the bus.
        self._entry_bytes = 14 + len(USAGE_EVENT_SOURCE) + len(self.detail_type) + _utf8_len(bus)

    def __call__(self, batch: list[UsageReport]) -> list[UsageReport]:
        failed: list[UsageReport] = []
        for put in self._puts(self._entries(batch, failed)):
            self._put(put, failed)
        return failed

    def _entries(self, batch: list[UsageReport], failed: list[UsageReport]) -> list[_Entry]:
        """The batch as EventBridge entries: its reports, their detail and its UTF-8 size."""
        packing = self.packing
        if packing > 1:
            return [e for i in range(0, len(batch), packing) for e in self._rows(batch[i : i + packing], failed)]
        entries: list[_Entry] = []
        for report in batch:
            try:
                detail = report.detail_json()
            except Exception:  # one report that cannot be encoded must not hold back the others
                logger.exception("guardrail: usage report %s could not be encoded", report.request_id)
                failed.append(report)
                continue
            entries.append(([report], detail, _utf8_len(detail)))
        return entries

    def _rows(self, reports: list[UsageReport], failed: list[UsageReport]) -> list[_Entry]:
        """One `Bedrock Usage Rows` entry, or (when it would not fit in a PutEvents, or cannot be encoded) two
        halves' entries: a report that cannot be encoded fails alone and holds back none of the others."""
        try:
            detail, size = rows_detail(reports)
        except Exception:
            if len(reports) == 1:
                logger.exception("guardrail: usage report %s could not be encoded", reports[0].request_id)
                failed.extend(reports)
                return []
        else:
            if len(reports) == 1 or self._entry_bytes + size <= self.max_bytes:
                return [(reports, detail, size)]
        half = len(reports) // 2
        return self._rows(reports[:half], failed) + self._rows(reports[half:], failed)

    def _puts(self, entries: list[_Entry]) -> list[list[_Entry]]:
        """Entries in order, as PutEvents requests of at most 10 entries and `max_bytes`."""
        puts: list[list[_Entry]] = []
        put: list[_Entry] = []
        put_bytes = 0
        for entry in entries:
            size = self._entry_bytes + entry[2]
            if put and (len(put) >= MAX_ENTRIES_PER_PUT or put_bytes + size > self.max_bytes):
                puts.append(put)
                put, put_bytes = [], 0
            put.append(entry)
            put_bytes += size
        if put:
            puts.append(put)
        return puts

    def _put(self, entries: list[_Entry], failed: list[UsageReport]) -> None:
        request = [
            {
                "Source": USAGE_EVENT_SOURCE,
                "DetailType": self.detail_type,
                "Detail": detail,
                "EventBusName": self.bus,
                "Time": reports[0].timestamp(),  # EventBridge's event time: the entry's first report's
            }
            for reports, detail, _ in entries
        ]
        try:
            resp = self.events.put_events(Entries=request)  # type: ignore[arg-type]
        except Exception as exc:
            logger.warning("guardrail: PutEvents failed (%s); will retry", exc)
            failed.extend(r for reports, _, _ in entries for r in reports)
            return
        sent_at = self.timer()
        results = resp.get("Entries", [])
        # What was sent, summed per set of books here (hundreds of reports, mostly of one set of books).
        costs: dict[tuple[str, ...], int] = {}
        get = costs.get
        for i, (reports, _, _) in enumerate(entries):
            if i >= len(results) or results[i].get("ErrorCode"):
                failed.extend(reports)
            else:
                for r in reports:
                    costs[r.books] = get(r.books, 0) + r.units
        self.spend.sent(costs.items(), sent_at)


def rows_detail(reports: Sequence[UsageReport]) -> tuple[str, int]:
    """The `Bedrock Usage Rows` detail of `reports` (guardrail.core.usage_event), and its UTF-8 size."""
    contexts: list[dict[str, Any]] = []
    by_object: dict[tuple[Any, ...], int] = {}  # a client's reports share their metadata dict and caller
    by_value: dict[tuple[Any, ...], int] = {}  # per-call metadata (requestMetadata): a new dict per report
    rows = []
    for r in reports:
        key = (r.model_id, r.region, r.caller, id(r.metadata))  # the reports hold the dicts: ids stay unique
        context = by_object.get(key)
        if context is None:
            arn = r.caller.arn()
            value = (r.model_id, r.region, arn, *r.metadata.items())
            context = by_value.get(value)
            if context is None:
                context = by_value[value] = len(contexts)
                contexts.append({"modelId": r.model_id, "region": r.region, "caller": arn, "metadata": r.metadata})
            by_object[key] = context
        rows.append((context, r.request_id, r.at, *r.usage, r.partial))  # ROW_COLUMNS' order
    detail = {"columns": ROW_COLUMNS, "contexts": contexts, "rows": rows}
    try:
        body = to_json(detail)
    except PydanticSerializationError:  # a lone surrogate (UTF-8 has none): escaped, as botocore sends it
        text = _ascii_json(detail)
        return text, len(text)
    return body.decode(), len(body)


_ascii_json = json.JSONEncoder(separators=(",", ":")).encode
_Entry = tuple[list["UsageReport"], str, int]  # one EventBridge entry: its reports, detail and detail bytes


def _utf8_len(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))
