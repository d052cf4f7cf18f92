"""Usage reports: priced on the caller's thread, sent on a background one (or inline).

A sink takes a batch of reports and returns the ones to retry: EventSink puts usage events on EventBridge
(`Bedrock Usage Rows` events of up to `packing` reports each, or one `Bedrock Usage` event per report with
packing 1; 10 entries and 256 KB per PutEvents); LedgerSink writes through an injected LedgerWriter (ledger
mode).

The reporter's CPU is paid by the caller's process: a PutEvents costs about 0.5 ms of botocore CPU, far more
than a report, so reports are packed several to an entry and linger briefly so that a PutEvents is full
even at low traffic. A single report's detail is built as plain JSON, byte for byte what
`UsageEventDetail.model_dump_json()` gives (the tests prove it), without the model.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import math
import queue
import threading
import time
import weakref
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal

# The events sink (guardrail/client/event_sink.py) is also named here, where the client has always found it.
from guardrail.client.event_sink import EventSink, reporter_events_client
from guardrail.client.flag_cache import FlagCache
from guardrail.client.identity import CallerIdentity
from guardrail.client.local_spend import LocalSpend
from guardrail.client.units import to_decimal, to_units
from guardrail.client.usage import Usage
from guardrail.core.models import UsageRecord
from guardrail.core.ports import LedgerWriter
from guardrail.core.usage_event import MAX_ENTRIES_PER_PUT

logger = logging.getLogger("guardrail.client")

__all__ = ["MAX_EVENTS_PER_PUT", "EventSink", "LedgerSink", "Reporter", "UsageReport", "reporter_events_client"]

MAX_EVENTS_PER_PUT = MAX_ENTRIES_PER_PUT  # EventBridge PutEvents limit
# Compact and UTF-8 as pydantic's model_dump_json, so the detail is byte-compatible with UsageEventDetail.
_encode_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_quote = json.encoder.encode_basestring  # a JSON string, UTF-8 kept (C)
_JSON_BOOL = ("false", "true")


class UsageReport:
    """One call's usage, priced; the UsageRecord is built on the reporter thread, off the hot path. `cost`:
    in units (guardrail.client.units; a Decimal is taken as dollars), what local accounting settles.

    The guarded call does not build it: it queues the constructor's arguments as one tuple (`Reporter.enqueue`),
    and the reporter thread builds the report (one object, fields unpacked) in a tight loop, where it is cheap."""

    __slots__ = (
        "_record",
        "at",
        "attempts",
        "books",
        "caller",
        "metadata",
        "model_id",
        "partial",
        "region",
        "request_id",
        "units",
        "usage",
    )

    def __init__(
        self,
        request_id: str,
        model_id: str,
        usage: Usage,
        region: str,
        caller: CallerIdentity,
        metadata: dict[str, str],
        partial: bool,
        at: float,
        books: tuple[str, ...],
        cost: int | Decimal,
    ) -> None:
        self.request_id = request_id
        self.model_id = model_id
        self.usage = usage
        self.region = region
        self.caller = caller
        self.metadata = metadata
        self.partial = partial
        self.at = at
        self.books = books
        self.units = cost if type(cost) is int else to_units(cost)
        self.attempts = 0
        self._record: UsageRecord | None = None

    @property
    def cost(self) -> Decimal:
        """The call's cost in dollars."""
        return to_decimal(self.units)

    @property
    def record(self) -> UsageRecord:
        if self._record is None:
            request_id, model_id, usage, region, caller, metadata, partial = self.fields
            self._record = UsageRecord(
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
        return self._record

    @property
    def fields(self) -> tuple[str, str, Usage, str, CallerIdentity, dict[str, str], bool]:
        """request id, model id, usage, region, caller, metadata, partial"""
        return (self.request_id, self.model_id, self.usage, self.region, self.caller, self.metadata, self.partial)

    def timestamp(self) -> datetime:
        return self._record.timestamp if self._record is not None else datetime.fromtimestamp(self.at, UTC)

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


# A report as the guarded call queues it: UsageReport's arguments, in order (built on the reporter thread).
ReportArgs = tuple[str, str, Usage, str, CallerIdentity, dict[str, str], bool, float, tuple[str, ...], int]
_Item = UsageReport | ReportArgs | threading.Event | None
FULL_CHECK_SECONDS = 0.02  # how often a lingering batch looks whether it is full (callers do not signal it)


class Reporter:
    """Runs a sink over reports: on one background thread or inline. In the background a batch is what
    queued meanwhile, up to `max_batch`; with `linger` > 0 the thread waits up to that many seconds after
    a batch's first report for it to fill (a full batch goes within FULL_CHECK_SECONDS, a flush or close at
    once). A sink returns the reports to retry; each gets `max_attempts` tries, then is dropped (logged: the
    invocation log still counts it).

    The calling threads' whole part is `enqueue(args)`: once the thread runs, the queue's own `put` (a C
    call, no Python frame, no event to set); the reporter thread builds each UsageReport and keeps track of
    what it holds."""

    def __init__(
        self,
        sink: Callable[[list[UsageReport]], list[UsageReport]],
        on_drop: Callable[[list[UsageReport]], None],
        *,
        background: bool,
        max_attempts: int,
        max_batch: int = 100,
        linger: float = 0.0,
        exit_timeout: float = 5.0,
    ) -> None:
        self.sink = sink
        self.on_drop = on_drop
        self.background = background
        self.max_attempts = max_attempts
        self.max_batch = max_batch
        self.linger = linger
        self.exit_timeout = exit_timeout
        self.before_exit: list[Callable[[], None]] = []  # e.g. report streams still open, marked partial
        self._queue: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self._wake = threading.Event()  # a lingering batch goes now: a flush or close asked
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._holding: list[UsageReport] = []  # what the reporter thread is sending, or will retry
        self._closing = False
        # A report (its arguments, or a UsageReport): until the thread runs, a method that starts it (or, not
        # in the background, reports inline); then the queue's put.
        self.enqueue: Callable[[UsageReport | ReportArgs], None] = (
            self._enqueue_first if background else self._report_inline
        )
        # Registered now, not at the first report: at exit it must also catch reports made at exit (an
        # abandoned stream's finalizer), whatever order the exit hooks run in. A weak reference: a
        # discarded client is not kept alive by its hook.
        atexit.register(_at_exit, weakref.ref(self))

    def submit(self, report: UsageReport) -> None:
        self.enqueue(report)

    def _enqueue_first(self, item: UsageReport | ReportArgs) -> None:
        if self._thread is None and not self._closing:
            self._start()
        self._queue.put(item)

    def _report_inline(self, item: UsageReport | ReportArgs) -> None:
        retry = self._process([item if type(item) is UsageReport else UsageReport(*item)])  # type: ignore[misc]
        while retry:
            time.sleep(_backoff(retry[0].attempts))
            retry = self._process(retry)

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is None:
                thread = threading.Thread(target=self._loop, name="guardrail-usage-reporter", daemon=True)
                thread.start()
                self._thread = thread
                self.enqueue = self._queue.put

    def close(self, timeout: float | None = None) -> list[UsageReport]:
        """At exit: report what is still open, send everything within a bounded wait, and log (with
        request ids) what could not be sent. Returns the unsent reports."""
        deadline = time.monotonic() + (self.exit_timeout if timeout is None else timeout)
        self._closing = True
        for hook in self.before_exit:
            try:
                hook()
            except Exception:
                logger.exception("guardrail: reporting open streams at exit failed")
        if self.background and self._thread is None:
            # The first report may come at exit (an abandoned stream): send it off the exiting thread. Python
            # 3.12+ starts no thread at interpreter exit (RuntimeError): then it is sent inline below.
            with contextlib.suppress(RuntimeError):
                self._start()
        if self._thread is not None and self._thread.is_alive():
            self.flush(max(0.0, deadline - time.monotonic()))
            unsent = list(self._holding) + self._drain()  # what the thread still holds, and what it never took
        else:
            unsent = self._drain()
            while unsent and time.monotonic() < deadline:
                unsent = self._process(unsent)
                if unsent:
                    time.sleep(min(_backoff(unsent[0].attempts), max(0.0, deadline - time.monotonic())))
        if unsent:
            logger.error(
                "guardrail: %d usage reports not sent at exit (request ids %s); the invocation log still counts "
                "them, but budgets saw them late",
                len(unsent),
                ", ".join(sorted(r.request_id for r in unsent)[:20]),
            )
        return unsent

    def _drain(self) -> list[UsageReport]:
        reports: list[UsageReport] = []
        waiters: list[threading.Event] = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            self._take(item, reports, waiters)
        for waiter in waiters:
            waiter.set()
        return reports

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything submitted so far has been reported (or dropped)."""
        if self._thread is None:
            return True
        done = threading.Event()
        self._queue.put(done)
        self._wake.set()  # a lingering batch goes now
        return done.wait(timeout)

    def _loop(self) -> None:
        retry: list[UsageReport] = []
        while True:
            reports: list[UsageReport] = []
            waiters: list[threading.Event] = []
            try:
                first = self._queue.get(timeout=_backoff(retry[0].attempts) if retry else None)
            except queue.Empty:
                pass
            else:
                self._take(first, reports, waiters)
                # Linger only for a new batch: a retry goes out when its backoff ends.
                self._gather(reports, waiters, linger=self.linger if not retry else 0.0)
            batch = self._holding = retry + reports
            retry = self._holding = self._process(batch) if batch else []
            if waiters:
                # Everything queued before a flush is in this batch (gathering stops at the flush); it waits
                # for the retries to succeed or be given up.
                while retry:
                    time.sleep(_backoff(retry[0].attempts))
                    retry = self._holding = self._process(retry)
                for waiter in waiters:
                    waiter.set()

    def _gather(self, reports: list[UsageReport], waiters: list[threading.Event], linger: float) -> None:
        """Fill a batch from the queue, waiting up to `linger` for it to fill. The thread sleeps through the
        linger, looking every FULL_CHECK_SECONDS whether the batch is full; a flush wakes it at once."""
        deadline = time.monotonic() + linger
        get, max_batch, make = self._queue.get_nowait, self.max_batch, UsageReport
        while True:
            # Cleared before the queue is read: a flush's event is then either read below, or sets it after.
            self._wake.clear()
            while len(reports) < max_batch and not waiters:
                try:
                    item = get()
                except queue.Empty:
                    break
                if type(item) is tuple:  # the usual item, built without a call to _take (hundreds per batch)
                    reports.append(make(*item))
                else:
                    self._take(item, reports, waiters)
            left = deadline - time.monotonic()
            if waiters or len(reports) >= max_batch or left <= 0:
                return
            self._wake.wait(min(left, FULL_CHECK_SECONDS))

    @staticmethod
    def _take(item: _Item, reports: list[UsageReport], waiters: list[threading.Event]) -> None:
        if type(item) is tuple:
            reports.append(UsageReport(*item))
        elif isinstance(item, UsageReport):
            reports.append(item)
        elif isinstance(item, threading.Event):
            waiters.append(item)

    def _process(self, batch: list[UsageReport]) -> list[UsageReport]:
        """Report a batch; return what to retry."""
        try:
            failed = self.sink(batch)
        except Exception:
            logger.exception("guardrail usage reporting failed; will retry")
            failed = batch
        if not failed:  # the usual batch: all sent
            return failed
        for r in failed:
            r.attempts += 1
        give_up = [r for r in failed if r.attempts >= self.max_attempts]
        if give_up:
            logger.error(
                "guardrail gave up reporting %d usage records after %d attempts (request ids %s); "
                "the invocation log still counts them",
                len(give_up),
                self.max_attempts,
                ", ".join(r.request_id for r in give_up[:5]),
            )
            self.on_drop(give_up)
        return [r for r in failed if r.attempts < self.max_attempts]


_exit_deadline: list[float] = []  # one bounded wait per process, however many clients it made


def _at_exit(ref: weakref.ReferenceType[Reporter]) -> None:
    reporter = ref()
    if reporter is None:
        return
    if not _exit_deadline:
        _exit_deadline.append(time.monotonic() + reporter.exit_timeout)
    reporter.close(max(0.0, _exit_deadline[0] - time.monotonic()))


def _backoff(attempts: int) -> float:
    return float(min(2.0, 0.05 * 2**attempts))


class LedgerSink:
    """report="ledger": writes through the injected LedgerWriter (the service's usage path: the same dedupe,
    thresholds, transitions and effects as the usage function), then learns the fresh totals and flags."""

    def __init__(self, writer: LedgerWriter, spend: LocalSpend, flags: FlagCache, timer: Callable[[], float]) -> None:
        self.writer = writer
        self.spend = spend
        self.flags = flags
        self.timer = timer

    def __call__(self, batch: list[UsageReport]) -> list[UsageReport]:
        read_at = self.timer()
        result = self.writer.write([r.record for r in batch])
        self.spend.written([(r.books, r.units) for r in batch], result.totals, read_at)
        for flag in result.flags:
            self.flags.put_flag(flag)
            logger.warning("guardrail: %s moved to %s (%s)", flag.scope, flag.level.label, flag.reason)
        return []
