"""Usage reports: priced on the caller's thread, sent on a background one (or inline).

A sink takes a batch of reports and returns the ones to retry: EventSink puts usage events on EventBridge
(`Bedrock Usage Rows` events of up to `packing` reports each, or one `Bedrock Usage` event per report with
packing 1; 10 entries and 256 KB per PutEvents); LedgerSink writes through an injected LedgerWriter (ledger
mode).

The reporter's CPU is paid by the caller's process: a PutEvents costs about 0.5 ms of botocore CPU, far more
than a report, so reports are packed several to an entry and linger briefly so that a PutEvents is full
even at low traffic. What a report is, and its JSON: guardrail.client.usage_report.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import queue
import threading
import time
import weakref
from collections.abc import Callable

# The events sink (guardrail/client/event_sink.py) is also named here, where the client has always found it.
from guardrail.client.event_sink import EventSink, reporter_events_client
from guardrail.client.flag_cache import FlagCache
from guardrail.client.local_spend import LocalSpend
from guardrail.client.usage_report import UsageReport
from guardrail.core.ports import LedgerWriter
from guardrail.core.usage_event import MAX_ENTRIES_PER_PUT

logger = logging.getLogger("guardrail.client")

__all__ = ["MAX_EVENTS_PER_PUT", "EventSink", "LedgerSink", "Reporter", "reporter_events_client"]

MAX_EVENTS_PER_PUT = MAX_ENTRIES_PER_PUT  # EventBridge PutEvents limit
_Item = UsageReport | threading.Event


class Reporter:
    """Runs a sink over reports: on one background thread or inline. In the background a batch is what
    queued meanwhile, up to `max_batch`; with `linger` > 0 the thread waits that many seconds after a batch's
    first report for others (a flush or close ends the wait at once), and what queued beyond `max_batch`
    goes in the next batches, at once. A sink returns the reports to retry; each gets `max_attempts` tries,
    then is dropped (logged: the invocation log still counts it).

    The calling threads' whole part is `enqueue(report)`: once the thread runs, the queue's own `put` (a C
    call, no Python frame, no event to set). The thread wakes as seldom as it can, since a wake-up costs the
    process far more CPU than a report when the callers keep the GIL busy (about 150 us on the development
    VM): once for a batch's first report (none while reports keep coming) and once when its linger ends. It
    keeps track of what it holds and how often it tried each report."""

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
        self._attempts: dict[int, int] = {}  # id(report) -> failed attempts, for a report held for a retry
        self._closing = False
        # Until the thread runs, a method that starts it (or, not in the background, reports inline); then the
        # queue's put.
        self.enqueue: Callable[[UsageReport], None] = self._enqueue_first if background else self._report_inline
        # Registered now, not at the first report: at exit it must also catch reports made at exit (an
        # abandoned stream's finalizer), whatever order the exit hooks run in. A weak reference: a
        # discarded client is not kept alive by its hook.
        atexit.register(_at_exit, weakref.ref(self))

    def _enqueue_first(self, item: UsageReport) -> None:
        if self._thread is None and not self._closing:
            self._start()
        self._queue.put(item)

    def _report_inline(self, report: UsageReport) -> None:
        retry = self._process([report])
        while retry:
            time.sleep(self._backoff_of(retry[0]))
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
                    time.sleep(min(self._backoff_of(unsent[0]), max(0.0, deadline - time.monotonic())))
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
                first = self._queue.get(timeout=self._backoff_of(retry[0]) if retry else None)
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
                    time.sleep(self._backoff_of(retry[0]))
                    retry = self._holding = self._process(retry)
                for waiter in waiters:
                    waiter.set()

    def _gather(self, reports: list[UsageReport], waiters: list[threading.Event], linger: float) -> None:
        """Fill a batch from the queue: what is there, up to `max_batch`; if that is not full, what came
        during `linger` seconds (asleep: only a flush or close wakes the thread sooner)."""
        deadline = time.monotonic() + linger
        get, max_batch = self._queue.get_nowait, self.max_batch
        while True:
            # Cleared before the queue is read: a flush's event is then either read below, or sets it after.
            self._wake.clear()
            while len(reports) < max_batch and not waiters:
                try:
                    item = get()
                except queue.Empty:
                    break
                if type(item) is UsageReport:  # the usual item, taken without a call (hundreds per batch)
                    reports.append(item)
                else:
                    self._take(item, reports, waiters)
            left = deadline - time.monotonic()
            if waiters or len(reports) >= max_batch or left <= 0:
                return
            self._wake.wait(left)

    @staticmethod
    def _take(item: _Item, reports: list[UsageReport], waiters: list[threading.Event]) -> None:
        if isinstance(item, UsageReport):
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
        attempts = self._attempts
        # What this batch had tried before (only retries have an entry); a report leaves the count here,
        # and a failed one comes back with one more.
        tried = {id(r): attempts.pop(id(r)) for r in batch if id(r) in attempts} if attempts else {}
        retry, give_up = [], []
        for r in failed:
            n = tried.get(id(r), 0) + 1
            if n >= self.max_attempts:
                give_up.append(r)
            else:
                attempts[id(r)] = n  # the retry list holds the report: its id stays its own meanwhile
                retry.append(r)
        if give_up:
            logger.error(
                "guardrail gave up reporting %d usage records after %d attempts (request ids %s); "
                "the invocation log still counts them",
                len(give_up),
                self.max_attempts,
                ", ".join(r.request_id for r in give_up[:5]),
            )
            self.on_drop(give_up)
        return retry

    def _backoff_of(self, report: UsageReport) -> float:
        return _backoff(self._attempts.get(id(report), 0))


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
