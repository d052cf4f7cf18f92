"""The `report="events"` sink: usage reports as EventBridge events, packed several to an entry.

`Bedrock Usage Batch` events of up to `packing` reports each (or one `Bedrock Usage` event per report with
packing 1), at most 10 entries and 256 KB per PutEvents, filled by each report's size. A PutEvents costs the
caller's process about 0.35 ms of botocore CPU plus about 3 us per KB, far more than a report: packing is
what keeps a guarded call's CPU low (benchmarks/bench_client_overhead.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from guardrail.client.local_spend import LocalSpend
from guardrail.core.usage_event import (
    MAX_ENTRIES_PER_PUT,
    MAX_PUT_EVENTS_BYTES,
    USAGE_BATCH_DETAIL_TYPE,
    USAGE_DETAIL_TYPE,
    USAGE_EVENT_SOURCE,
)

if TYPE_CHECKING:
    from mypy_boto3_events import EventBridgeClient

    from guardrail.client.reporting import UsageReport

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
    """Usage events on EventBridge. With `packing` > 1, `Bedrock Usage Batch` events of up to `packing`
    reports each; with 1, one `Bedrock Usage` event per report (what a stack from before issue 19 hears).
    A PutEvents holds up to 10 entries and at most `max_bytes` (EventBridge's 256 KB, counting every
    entry's Time, Source, DetailType, Detail and bus name): packing is bounded by each report's detail size,
    and a report too big to share goes alone."""

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
        detail_type = USAGE_BATCH_DETAIL_TYPE if packing > 1 else USAGE_DETAIL_TYPE
        # An entry's bytes besides its detail: Time (14, as EventBridge counts it), Source, DetailType, the bus.
        self._entry_bytes = 14 + len(USAGE_EVENT_SOURCE) + len(detail_type) + _utf8_len(bus)

    def __call__(self, batch: list[UsageReport]) -> list[UsageReport]:
        failed: list[UsageReport] = []
        for put in self._puts(batch, failed):
            self._put(put, failed)
        return failed

    def _puts(self, batch: list[UsageReport], failed: list[UsageReport]) -> list[list[_Entry]]:
        """The batch as PutEvents requests, each a list of entries (their reports, and the reports' details)."""
        puts: list[list[_Entry]] = [[]]
        put_bytes = 0  # the current request's bytes, its open entry included
        packing, max_bytes = self.packing, self.max_bytes
        # A new entry's bytes besides its details: the packed detail adds `{"reports":[]}`.
        entry_bytes = self._entry_bytes + (len('{"reports":[]}') if packing > 1 else 0)
        entry: _Entry | None = None  # the open entry
        from guardrail.client.reporting import UsageReport  # (imports this module)

        room = 0  # reports the open entry still takes
        render = UsageReport.packed_json if packing > 1 else UsageReport.detail_json
        for report in batch:
            try:
                detail = render(report)
            except Exception:  # one report that cannot be encoded must not hold back the others
                logger.exception("guardrail: usage report %s could not be encoded", report.request_id)
                failed.append(report)
                continue
            size = len(detail) if detail.isascii() else _utf8_len(detail)
            # Joining the open entry adds the detail and a comma.
            if room and entry is not None and put_bytes + size + 1 <= max_bytes:
                entry[0].append(report)
                entry[1].append(detail)
                put_bytes += size + 1
                room -= 1
                continue
            entries = puts[-1]
            if entries and (len(entries) >= MAX_ENTRIES_PER_PUT or put_bytes + entry_bytes + size > max_bytes):
                entries = []  # a new PutEvents (a report too big to share goes alone)
                puts.append(entries)
                put_bytes = 0
            entry = ([report], [detail])
            room = packing - 1
            entries.append(entry)
            put_bytes += entry_bytes + size
        return [p for p in puts if p]

    def _put(self, entries: list[_Entry], failed: list[UsageReport]) -> None:
        packed = self.packing > 1
        request = [
            {
                "Source": USAGE_EVENT_SOURCE,
                "DetailType": USAGE_BATCH_DETAIL_TYPE if packed else USAGE_DETAIL_TYPE,
                "Detail": '{"reports":[' + ",".join(details) + "]}" if packed else details[0],
                "EventBusName": self.bus,
                "Time": reports[0].timestamp(),  # EventBridge's event time: the entry's first report's
            }
            for reports, details in entries
        ]
        try:
            resp = self.events.put_events(Entries=request)  # type: ignore[arg-type]
        except Exception as exc:
            logger.warning("guardrail: PutEvents failed (%s); will retry", exc)
            failed.extend(r for reports, _ in entries for r in reports)
            return
        sent_at = self.timer()
        results = resp.get("Entries", [])
        # What was sent, summed per set of books here (hundreds of reports, mostly of one set of books).
        costs: dict[tuple[str, ...], int] = {}
        get = costs.get
        for i, (reports, _) in enumerate(entries):
            if i >= len(results) or results[i].get("ErrorCode"):
                failed.extend(reports)
            else:
                for r in reports:
                    costs[r.books] = get(r.books, 0) + r.units
        self.spend.sent(costs.items(), sent_at)


_Entry = tuple[list["UsageReport"], list[str]]  # one EventBridge entry: its reports and their details


def _utf8_len(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))
