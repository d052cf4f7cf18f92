"""The guarded client's reporter: the event detail it builds without pydantic is the contract's, byte for
byte; reports share PutEvents (10 per call), linger briefly, and none is lost on close or on a partial
PutEvents failure."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import boto3
from botocore.stub import Stubber
from hypothesis import given
from hypothesis import strategies as st

from guardrail.client.event_sink import rows_detail
from guardrail.client.identity import CallerIdentity
from guardrail.client.local_spend import LocalSpend
from guardrail.client.reporting import EventSink, Reporter
from guardrail.client.units import to_units
from guardrail.client.usage import Usage
from guardrail.client.usage_report import UsageReport
from guardrail.core.usage_event import (
    USAGE_DETAIL_TYPE,
    USAGE_ROWS_DETAIL_TYPE,
    UsageEventDetail,
    UsageRowsDetail,
    record_from_detail,
    row_details,
)
from tests.support.usage_events import entry_details

CALLER = "arn:aws:sts::123456789012:assumed-role/chat-api-role/chat-api"
WAIT = 30.0  # seconds a test waits for the reporter thread before failing (never a bound on speed)


def report(
    n: int = 0,
    *,
    at: float = 1_795_000_000.25,
    usage: Usage | None = None,
    metadata: dict[str, str] | None = None,
    partial: bool = False,
    request_id: str | None = None,
    model_id: str = "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
    caller: str = CALLER,
) -> UsageReport:
    fields = (
        request_id or f"req-{n}",
        model_id,
        usage or Usage(3, 12, cache_read_tokens=25_037),
        "us-east-1",
        CallerIdentity(caller, None, time.monotonic),
        metadata if metadata is not None else {"app": "chat-api"},
        partial,
    )
    return UsageReport(*fields, at, ("book",), to_units(Decimal("0.01")))


# -- the wire format ------------------------------------------------------------------------------------

text = st.text(st.characters(codec="utf-8"), max_size=40)


@given(
    request_id=text.filter(bool),
    model_id=text.filter(bool),
    counts=st.tuples(*[st.integers(0, 2**40)] * 5),
    tier=st.sampled_from(["", "priority", "flex"]),
    latency=st.booleans(),
    metadata=st.dictionaries(text, text, max_size=4),
    partial=st.booleans(),
    caller=text,
    at=st.floats(0, 4_000_000_000),
)
def test_the_detail_is_byte_for_byte_what_the_pydantic_contract_gives(
    request_id: str,
    model_id: str,
    counts: tuple[int, int, int, int, int],
    tier: str,
    latency: bool,
    metadata: dict[str, str],
    partial: bool,
    caller: str,
    at: float,
) -> None:
    one_hour = min(counts[4], counts[3])  # part of the cache writes, as read_usage makes it
    usage = Usage(*counts[:4], one_hour, service_tier=tier, latency_optimized=latency)
    r = report(
        at=at, usage=usage, metadata=metadata, partial=partial, request_id=request_id, model_id=model_id, caller=caller
    )
    detail = r.detail_json()
    assert detail == UsageEventDetail.from_record(r.record).model_dump_json()
    # ... and the usage handler's parser reads back the record the client priced.
    parsed = record_from_detail(UsageEventDetail.model_validate_json(detail), "event")
    assert parsed == r.record.__class__(**{**_fields(r.record), "source": "event", "service_tier": tier})


def _fields(record: Any) -> dict[str, Any]:
    return {name: getattr(record, name) for name in record.__dataclass_fields__}


def test_entries_pass_botocore_validation_of_put_events() -> None:
    """The reporter's own client skips botocore's validation; the entries it builds pass it."""
    events = boto3.client("events", region_name="us-east-1")  # validating
    with Stubber(events) as stub:
        stub.add_response("put_events", {"FailedEntryCount": 0, "Entries": [{"EventId": str(i)} for i in range(10)]})
        sink = EventSink(events, "guardrail-usage", LocalSpend(), time.monotonic)
        assert sink([report(i) for i in range(10)]) == []
        stub.assert_no_pending_responses()


# -- batching -------------------------------------------------------------------------------------------


class RecordingEvents:
    """An EventBridge client that records each PutEvents; entries whose request id is in `fail_once` fail
    the first time they are put."""

    def __init__(self, fail_once: set[str] | None = None) -> None:
        self.calls: list[list[dict[str, Any]]] = []
        self.fail_once = set(fail_once or ())
        self.called = threading.Condition()

    def put_events(self, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        results = []
        for entry in Entries:
            request_id = UsageEventDetail.model_validate_json(entry["Detail"]).requestId
            if request_id in self.fail_once:
                self.fail_once.discard(request_id)
                results.append({"ErrorCode": "InternalException", "ErrorMessage": "try again"})
            else:
                results.append({"EventId": request_id})
        with self.called:
            self.calls.append(Entries)
            self.called.notify_all()
        return {"FailedEntryCount": sum("ErrorCode" in r for r in results), "Entries": results}

    def wait_for(self, calls: int) -> None:
        with self.called:
            assert self.called.wait_for(lambda: len(self.calls) >= calls, WAIT)

    def sizes(self) -> list[int]:
        return [len(c) for c in self.calls]

    def request_ids(self) -> list[str]:
        return [UsageEventDetail.model_validate_json(e["Detail"]).requestId for c in self.calls for e in c]


def reporter(events: RecordingEvents, *, linger: float, dropped: list[UsageReport] | None = None) -> Reporter:
    sink = EventSink(events, "guardrail-usage", LocalSpend(), time.monotonic)  # type: ignore[arg-type]
    return Reporter(
        sink,
        (dropped if dropped is not None else []).extend,
        background=True,
        max_attempts=3,
        max_batch=10,
        linger=linger,
    )


def test_reports_share_put_events_ten_at_a_time_and_close_sends_the_rest() -> None:
    events = RecordingEvents()
    r = reporter(events, linger=3600)  # only a flush or close ends the linger
    for i in range(25):
        r.enqueue(report(i))
    assert r.close(timeout=WAIT) == []
    assert events.sizes() == [10, 10, 5]
    assert events.request_ids() == [f"req-{i}" for i in range(25)]
    entry = events.calls[0][0]
    assert (entry["Source"], entry["DetailType"], entry["EventBusName"]) == (
        "guardrail.client",
        USAGE_DETAIL_TYPE,
        "guardrail-usage",
    )
    assert entry["Time"] == datetime.fromtimestamp(1_795_000_000.25, UTC)


def test_a_flush_sends_what_lingers_in_one_put_events() -> None:
    events = RecordingEvents()
    r = reporter(events, linger=3600)
    for i in range(3):
        r.enqueue(report(i))
    assert r.flush(WAIT)
    assert events.sizes() == [3]


def test_a_lone_report_goes_out_when_the_linger_ends() -> None:
    events = RecordingEvents()
    r = reporter(events, linger=0.01)
    r.enqueue(report(1))
    events.wait_for(1)  # no flush, no close: the linger ended
    assert events.sizes() == [1]


def test_a_partially_failed_put_events_retries_only_the_failed_entries() -> None:
    events = RecordingEvents(fail_once={"req-2", "req-7"})
    dropped: list[UsageReport] = []
    r = reporter(events, linger=3600, dropped=dropped)
    for i in range(10):
        r.enqueue(report(i))
    assert r.flush(WAIT)
    assert events.sizes() == [10, 2]
    assert sorted(events.request_ids()) == sorted([f"req-{i}" for i in range(10)] + ["req-2", "req-7"])
    assert dropped == []
    assert r.close(timeout=WAIT) == []


def test_a_report_that_keeps_failing_is_dropped_and_accounted() -> None:
    class Failing(RecordingEvents):
        def put_events(self, Entries: list[dict[str, Any]]) -> dict[str, Any]:
            self.fail_once.add("req-1")
            return super().put_events(Entries)

    events = Failing()
    dropped: list[UsageReport] = []
    r = reporter(events, linger=3600, dropped=dropped)
    r.enqueue(report(0))
    r.enqueue(report(1))
    assert r.flush(WAIT)
    assert [d.request_id for d in dropped] == ["req-1"]
    assert events.sizes() == [2, 1, 1]  # three attempts, then given up
    assert r.close(timeout=WAIT) == []


def test_close_names_what_the_thread_holds_and_what_it_never_took() -> None:
    taken, release = threading.Event(), threading.Event()
    sent: list[str] = []

    def stuck(batch: list[UsageReport]) -> list[UsageReport]:
        taken.set()
        release.wait(WAIT)  # a PutEvents that hangs past the exit flush
        sent.extend(r.request_id for r in batch)
        return []

    r = Reporter(stuck, lambda _: None, background=True, max_attempts=3, max_batch=10, linger=0.0)
    r.enqueue(report(0, request_id="req-held"))
    assert taken.wait(WAIT)
    r.enqueue(report(1))
    r.enqueue(report(2))

    unsent = r.close(timeout=0.2)

    assert sorted(u.request_id for u in unsent) == ["req-1", "req-2", "req-held"]
    release.set()


def test_an_inline_reporter_sends_before_the_call_returns() -> None:
    events = RecordingEvents()
    sink = EventSink(events, "guardrail-usage", LocalSpend(), time.monotonic)  # type: ignore[arg-type]
    r = Reporter(sink, lambda _: None, background=False, max_attempts=3, max_batch=10, linger=3600)
    r.enqueue(report(1))
    assert events.sizes() == [1]


def test_the_reporters_own_client_sends_the_same_entries_on_botocores_pipeline() -> None:
    from botocore.awsrequest import AWSResponse

    from guardrail.client.reporting import reporter_events_client

    sent: list[Any] = []

    def http(request: Any, **_: Any) -> Any:
        sent.append(request)
        body = b'{"FailedEntryCount":0,"Entries":[' + b",".join([b'{"EventId":"e"}'] * 10) + b"]}"
        raw = type("Raw", (), {"stream": lambda self, **_: iter([body])})()
        headers: Any = {"Content-Type": "application/x-amz-json-1.1"}
        return AWSResponse(request.url, 200, headers, raw)

    events = reporter_events_client()
    events.meta.events.register("before-send.events.PutEvents", http)
    sink = EventSink(events, "guardrail-usage", LocalSpend(), time.monotonic)
    batch = [report(i) for i in range(10)]
    assert sink(batch) == []
    (request,) = sent
    assert request.headers["User-Agent"].startswith(b"bedrock-cost-guardrail-client")
    entries = json.loads(request.body)["Entries"]
    assert [e["Detail"] for e in entries] == [r.detail_json() for r in batch]
    assert {e["Time"] for e in entries} == {1_795_000_000.25}


# -- packing (issue 19) -----------------------------------------------------------------------------------


def entry_bytes(entry: dict[str, Any]) -> int:
    """An entry's size as EventBridge counts it (Time 14 bytes; Source, DetailType, Detail in UTF-8), plus the
    bus name, which the sink also counts to stay on the safe side."""
    return 14 + sum(len(entry[k].encode()) for k in ("Source", "DetailType", "Detail", "EventBusName"))


def packed_sink(events: RecordingEvents | Any, packing: int = 25, **kw: Any) -> EventSink:
    return EventSink(events, "guardrail-usage", LocalSpend(), time.monotonic, packing=packing, **kw)


class PackedEvents(RecordingEvents):
    def put_events(self, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        with self.called:
            self.calls.append(Entries)
        return {"FailedEntryCount": 0, "Entries": [{"EventId": str(i)} for i in range(len(Entries))]}

    def reports(self) -> list[list[list[str]]]:
        """Request ids, per PutEvents, per entry."""
        return [[[d["requestId"] for d in entry_details(e)] for e in c] for c in self.calls]


def read_back(detail: str) -> list[Any]:
    """A rows detail as the usage function reads it: the records its rows stand for."""
    rows = UsageRowsDetail.model_validate(json.loads(detail))
    out = []
    for i, _, usage in row_details(rows):
        assert not isinstance(usage, str), f"rows[{i}]: {usage}"
        out.append(record_from_detail(UsageEventDetail.model_validate(usage), "event"))
    return out


@given(
    st.lists(
        st.tuples(
            text.filter(bool),  # request id
            st.sampled_from(["us.anthropic.claude-sonnet-4-5-20250929-v1:0", "amazon.nova-pro-v1:0", "m\u00e9"]),
            st.tuples(*[st.integers(0, 2**40)] * 5),
            st.sampled_from(["", "priority", "flex"]),
            st.booleans(),  # latency optimized
            st.sampled_from([{"app": "chat-api"}, {}, {"app": "x", "tenant": 't"1'}, {"app": "\u00e9\u4e2d"}]),
            st.booleans(),  # a metadata dict of its own (requestMetadata) or the client's
            st.booleans(),  # partial
            st.sampled_from([CALLER, "", "arn:aws:iam::123456789012:user/\u00e9"]),
            st.floats(0, 4_000_000_000),
        ),
        min_size=1,
        max_size=30,
    )
)
def test_a_rows_detail_reads_back_as_the_records_the_client_priced(cases: list[Any]) -> None:
    reports = []
    for request_id, model_id, counts, tier, latency, metadata, own, partial, caller, at in cases:
        usage = Usage(*counts[:4], min(counts[4], counts[3]), service_tier=tier, latency_optimized=latency)
        md = dict(metadata) if own else metadata
        r = report(at=at, usage=usage, metadata=md, partial=partial, request_id=request_id, model_id=model_id)
        reports.append(r._replace(caller=CallerIdentity(caller, None, time.monotonic)))
    detail, size = rows_detail(reports)
    assert size == len(detail.encode())
    expected = [r.record.__class__(**{**_fields(r.record), "source": "event"}) for r in reports]
    assert read_back(detail) == expected  # the timestamp to the microsecond, as datetime.fromtimestamp has it
    # What the reports share is written once: a context per (model, region, caller, metadata) in use.
    shared = {(r.model_id, r.caller.arn(), tuple(r.metadata.items())) for r in reports}
    assert len(json.loads(detail)["contexts"]) == len(shared)


def test_a_lone_surrogate_is_sent_escaped_and_reaches_the_handler_to_be_quarantined() -> None:
    # pydantic-core cannot write it as UTF-8; the entry is written by json instead, escaped as botocore would
    reports = [report(0), report(1, metadata={"app": "bad\ud800"})]
    detail, size = rows_detail(reports)
    assert detail.isascii() and size == len(detail) and "\\ud800" in detail
    rows = UsageRowsDetail.model_validate(json.loads(detail))
    assert [d["metadata"] for _, _, d in row_details(rows)] == [{"app": "chat-api"}, {"app": "bad\ud800"}]  # type: ignore[index]


def test_a_report_that_cannot_be_encoded_fails_alone_and_the_others_are_sent() -> None:
    class Unreadable(CallerIdentity):
        def arn(self) -> str:
            raise RuntimeError("boom")

    events = PackedEvents()
    batch = [report(i) for i in range(7)]
    batch[4] = batch[4]._replace(caller=Unreadable("", None, time.monotonic))
    failed = packed_sink(events)(batch)
    assert [r.request_id for r in failed] == ["req-4"]
    assert [i for put in events.reports() for ids in put for i in ids] == [f"req-{i}" for i in range(7) if i != 4]


def test_reports_are_packed_into_rows_events_that_read_back_as_the_single_details() -> None:
    events = PackedEvents()
    batch = [report(i) for i in range(60)]
    assert packed_sink(events)(batch) == []
    (put,) = events.calls  # 60 reports: one PutEvents of 25 + 25 + 10
    assert [len(ids) for ids in events.reports()[0]] == [25, 25, 10]
    assert {(e["Source"], e["DetailType"]) for e in put} == {("guardrail.client", USAGE_ROWS_DETAIL_TYPE)}
    as_sent = [UsageEventDetail.model_validate(d) for e in put for d in entry_details(e)]
    assert as_sent == [UsageEventDetail.model_validate_json(r.detail_json()) for r in batch]
    # The reports share their model, region, caller and metadata: one context per entry, and a quarter of
    # the bytes their single details take.
    assert [len(json.loads(e["Detail"])["contexts"]) for e in put] == [1, 1, 1]
    assert sum(len(e["Detail"]) for e in put) * 4 < sum(len(r.detail_json()) for r in batch)


def test_packed_entries_pass_botocore_validation_of_put_events() -> None:
    events = boto3.client("events", region_name="us-east-1")  # validating
    with Stubber(events) as stub:
        stub.add_response("put_events", {"FailedEntryCount": 0, "Entries": [{"EventId": str(i)} for i in range(4)]})
        assert packed_sink(events)([report(i) for i in range(100)]) == []
        stub.assert_no_pending_responses()


@given(
    sizes=st.lists(st.integers(0, 3_000), min_size=1, max_size=80),
    packing=st.integers(1, 30),
    max_bytes=st.integers(2_000, 12_000),
)
def test_packing_never_passes_eventbridges_limits_and_sends_every_report_once_in_order(
    sizes: list[int], packing: int, max_bytes: int
) -> None:
    events = PackedEvents()
    batch = [report(i, metadata={"app": "x" * n}) for i, n in enumerate(sizes)]
    assert packed_sink(events, packing, max_bytes=max_bytes)(batch) == []
    sent: list[str] = []
    for put in events.calls:
        assert 1 <= len(put) <= 10
        per_entry = []
        for entry in put:
            ids = [d["requestId"] for d in entry_details(entry)]
            assert 1 <= len(ids) <= packing
            per_entry.append(ids)
            sent += ids
        if sum(entry_bytes(e) for e in put) > max_bytes:  # only a report too big to share may pass: alone
            assert len(per_entry) == 1 and len(per_entry[0]) == 1
    assert sent == [f"req-{i}" for i in range(len(sizes))]


def test_a_report_too_big_to_share_goes_alone_and_the_others_are_not_held_back() -> None:
    events = PackedEvents()
    huge = report(1, metadata={"app": "x" * 300_000})  # over EventBridge's 256 KB by itself
    batch = [report(0), huge, report(2), report(3)]
    packed_sink(events)(batch)
    assert events.reports() == [[["req-0"]], [["req-1"]], [["req-2", "req-3"]]]
    assert all(sum(entry_bytes(e) for e in put) <= 256 * 1024 for put in events.calls[::2])


def test_a_put_events_of_many_large_reports_stays_under_256_kb() -> None:
    events = PackedEvents()
    # Metadata of its own per report (about 4.3 KB in UTF-8): nothing to share, a context per row.
    batch = [report(i, metadata={"app": f"{i}" + "\u00e9" * 2_000}) for i in range(250)]
    packed_sink(events)(batch)
    assert all(sum(entry_bytes(e) for e in put) <= 256 * 1024 for put in events.calls)
    assert [i for put in events.reports() for ids in put for i in ids] == [f"req-{i}" for i in range(250)]
    assert len(events.calls) == 250 // 50  # two entries of 25 (about 108 KB each) per PutEvents


def test_a_failed_packed_entry_retries_every_report_it_carried() -> None:
    class FailSecond(PackedEvents):
        def put_events(self, Entries: list[dict[str, Any]]) -> dict[str, Any]:
            super().put_events(Entries)
            results: list[dict[str, Any]] = [{"EventId": "1"} for _ in Entries]
            results[1] = {"ErrorCode": "InternalException", "ErrorMessage": "try again"}
            return {"FailedEntryCount": 1, "Entries": results}

    batch = [report(i) for i in range(30)]
    failed = packed_sink(FailSecond(), packing=10)(batch)
    assert [r.request_id for r in failed] == [f"req-{i}" for i in range(10, 20)]


def test_the_timestamp_rounds_and_rolls_over_as_datetime_does() -> None:
    from pydantic import TypeAdapter

    from guardrail.client.usage_report import _stamp

    as_pydantic = TypeAdapter(datetime).dump_json
    for at in (0.0, 0.0000005, 0.0000015, 1.9999995, 1.9999996, 59.9999999, 1_795_000_000.25, 3_999_999_999.9999997):
        assert _stamp(at) == as_pydantic(datetime.fromtimestamp(at, UTC)).decode().strip('"'), at
