"""Guarded Bedrock client: every Python caller obeys the guardrail's flags, and reports its usage in
seconds instead of waiting for invocation logs.

    import boto3
    from guardrail.client import guard

    bedrock = guard(boto3.client("bedrock-runtime"), metadata={"app": "chat-api"})

`converse`, `converse_stream`, `invoke_model` and `invoke_model_with_response_stream` keep boto3's call
signatures and return values; every other attribute is the wrapped client's.

Before each call: the flags of `global` and of the scopes the client's metadata selects (`app:<app>`,
`tenant:<tenant>`) come from a TTL cache (default 1 s, one store read per TTL per process). Shutdown ->
`guardrail.GuardrailShutdown` without calling Bedrock. Throttle -> the model id is rewritten by the flag's
downgrades (the inference profile prefix is kept) and the response's `ResponseMetadata["Guardrail"]` and
the log say so. Local accounting refuses a call as soon as this process knows the shutdown threshold is
reached (see `guardrail.localspend`).

After each call: usage (Converse `usage`, the ConverseStream `metadata` event, InvokeModel headers and the
Anthropic body `usage`, stream `amazon-bedrock-invocationMetrics`) is priced exactly and reported on a
background thread, as an EventBridge `Bedrock Usage` event (`report="events"`) or straight into the ledger
through the engine (`report="ledger"`). Both dedupe with the invocation log on the Bedrock request id.
A stream the caller abandons is reported with the tokens it saw, marked partial.
"""

from __future__ import annotations

import atexit
import io
import json
import logging
import math
import queue
import re
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, cast

from guardrail.downgrade import KNOWN_MODELS, downgrade_model_id
from guardrail.exceptions import GuardrailShutdown
from guardrail.flagcache import DynamoFlagSource, FailMode, FlagCache, ScopeView
from guardrail.ledger import CounterKey
from guardrail.localspend import LocalSpend, Refusal, Ticket, book_id
from guardrail.models import Budget, Flag, Level, UsageRecord, reset_command
from guardrail.scopes import ScopeResolver
from guardrail.sources import USAGE_DETAIL_TYPE, USAGE_EVENT_SOURCE, UsageEventDetail
from guardrail.windows import window_for

if TYPE_CHECKING:
    from typing import Unpack

    from mypy_boto3_bedrock_runtime import BedrockRuntimeClient
    from mypy_boto3_bedrock_runtime.type_defs import (
        ConverseRequestTypeDef,
        ConverseResponseTypeDef,
        ConverseStreamRequestTypeDef,
        ConverseStreamResponseTypeDef,
        InvokeModelRequestTypeDef,
        InvokeModelResponseTypeDef,
        InvokeModelWithResponseStreamRequestTypeDef,
        InvokeModelWithResponseStreamResponseTypeDef,
    )
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_events import EventBridgeClient

    from guardrail.config import Settings
    from guardrail.engine import Engine
    from guardrail.pricing import Pricer

logger = logging.getLogger("guardrail.client")

ReportMode = Literal["events", "ledger"]

INPUT_TOKENS_HEADER = "x-amzn-bedrock-input-token-count"
OUTPUT_TOKENS_HEADER = "x-amzn-bedrock-output-token-count"
CACHE_READ_HEADER = "x-amzn-bedrock-cache-read-input-token-count"
CACHE_WRITE_HEADER = "x-amzn-bedrock-cache-write-input-token-count"
INVOCATION_METRICS = "amazon-bedrock-invocationMetrics"
MAX_EVENTS_PER_PUT = 10  # EventBridge PutEvents limit
# Converse requestMetadata: at most 16 pairs, this alphabet, 256 characters.
_REQUEST_METADATA_TEXT = re.compile(r"[a-zA-Z0-9\s:_@$#=/+,\-.]{0,256}")
CHARS_PER_TOKEN = 4  # only for estimating what an abandoned stream had not been told yet


@dataclass(frozen=True, slots=True)
class ClientOptions:
    """How the guarded client reads flags and reports usage.

    report: "events" puts a `Bedrock Usage` event on `event_bus` (the usage handler ingests it);
        "ledger" writes the ledger directly through the engine (needs write access to the table) and
        learns the new totals at once.
    flag_ttl: seconds a flag read is reused. max_stale: seconds a last known flag is served while the
        store is unreachable; after that `fail_mode` "open" lets calls through (logged at ERROR) and
        "closed" refuses them. flag_read_timeout: the longest a caller ever waits for the flag store.
    reserve_in_flight: count requests in flight (at this process's recent mean cost per model) in local
        accounting, which bounds overshoot to less than one request's cost per process.
    background: report on a background thread (False: inline, before the call returns).
    tag_requests: add the client's metadata to Converse `requestMetadata`, so the invocation log of the
        same request counts towards the same scopes.
    """

    report: ReportMode = "events"
    event_bus: str = "default"
    flag_ttl: float = 1.0
    max_stale: float = 300.0
    fail_mode: FailMode = "open"
    flag_read_timeout: float = 1.0
    reserve_in_flight: bool = True
    background: bool = True
    tag_requests: bool = True
    known_models: tuple[str, ...] = KNOWN_MODELS
    max_report_attempts: int = 5


class Usage(NamedTuple):
    """Token counts of one response. `input_tokens` excludes cache tokens, as Bedrock reports them."""

    input_tokens: int
    output_tokens: int
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0


class _Report:
    """One call's usage, priced; the UsageRecord is built on the reporter thread, off the hot path."""

    __slots__ = ("_record", "at", "attempts", "books", "cost", "fields")

    def __init__(
        self,
        fields: tuple[str, str, Usage, str, str, dict[str, str], bool],
        at: float,
        books: tuple[str, ...],
        cost: Decimal,
    ) -> None:
        self.fields = fields  # request id, model id, usage, region, caller, metadata, partial
        self.at = at
        self.books = books
        self.cost = cost
        self.attempts = 0
        self._record: UsageRecord | None = None

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
                region=region,
                caller=caller,
                metadata=metadata,
                source="client",
                partial=partial,
            )
        return self._record


@dataclass(slots=True)
class _Call:
    """One guarded call between its admission and its usage report."""

    operation: str
    kwargs: dict[str, Any]
    scopes: _ScopeSet
    limits: tuple[Decimal | None, ...]
    ticket: Ticket
    metadata: dict[str, str]
    model_id: str
    downgrade: dict[str, str] | None = None


# -- usage extraction (pure) -------------------------------------------------------------------------


def _int(value: Any) -> int:
    if type(value) is int:
        return value if value > 0 else 0
    if isinstance(value, bool) or value is None:
        return 0
    if isinstance(value, int):
        return max(0, value)
    try:
        return max(0, int(str(value)))
    except ValueError:
        return 0


def converse_usage(usage: Mapping[str, Any] | None) -> Usage | None:
    """Converse `usage` / the ConverseStream metadata event's `usage` (inputTokens excludes cache)."""
    if not usage or "inputTokens" not in usage:
        return None
    return Usage(
        input_tokens=_int(usage.get("inputTokens")),
        output_tokens=_int(usage.get("outputTokens")),
        cache_read_tokens=_int(usage.get("cacheReadInputTokens")),
        cache_write_tokens=_int(usage.get("cacheWriteInputTokens")),
    )


def anthropic_usage(usage: Mapping[str, Any] | None) -> Usage | None:
    """Anthropic Messages `usage` (input_tokens excludes cache_creation/cache_read_input_tokens)."""
    if not isinstance(usage, Mapping) or "input_tokens" not in usage:
        return None
    return Usage(
        input_tokens=_int(usage.get("input_tokens")),
        output_tokens=_int(usage.get("output_tokens")),
        cache_read_tokens=_int(usage.get("cache_read_input_tokens")),
        cache_write_tokens=_int(usage.get("cache_creation_input_tokens")),
    )


def invocation_metrics_usage(metrics: Mapping[str, Any] | None) -> Usage | None:
    """`amazon-bedrock-invocationMetrics` in the last chunk of InvokeModelWithResponseStream."""
    if not isinstance(metrics, Mapping) or "inputTokenCount" not in metrics:
        return None
    return Usage(
        input_tokens=_int(metrics.get("inputTokenCount")),
        output_tokens=_int(metrics.get("outputTokenCount")),
        cache_read_tokens=_int(metrics.get("cacheReadInputTokenCount")),
        cache_write_tokens=_int(metrics.get("cacheWriteInputTokenCount")),
    )


def invoke_model_usage(headers: Mapping[str, Any], body: bytes) -> Usage | None:
    """InvokeModel: the Anthropic body `usage` (it has the cache counts) or else the token headers."""
    if body[:1] == b"{" and b'"usage"' in body:
        try:
            doc = json.loads(body)
        except ValueError:
            doc = None
        if isinstance(doc, dict):
            found = anthropic_usage(doc.get("usage"))
            if found is not None:
                return found
    if INPUT_TOKENS_HEADER not in headers:
        return None
    return Usage(
        input_tokens=_int(headers.get(INPUT_TOKENS_HEADER)),
        output_tokens=_int(headers.get(OUTPUT_TOKENS_HEADER)),
        cache_read_tokens=_int(headers.get(CACHE_READ_HEADER)),
        cache_write_tokens=_int(headers.get(CACHE_WRITE_HEADER)),
    )


def estimate_input_tokens(operation: str, kwargs: Mapping[str, Any]) -> int:
    """A rough count for a stream abandoned before Bedrock said how many input tokens it read."""
    if operation == "converse_stream":
        parts = {k: kwargs.get(k) for k in ("messages", "system", "toolConfig") if kwargs.get(k)}
        text = json.dumps(parts, default=str, ensure_ascii=False)
    else:
        body = kwargs.get("body", b"")
        text = body.decode("utf-8", "replace") if isinstance(body, bytes | bytearray) else str(body)
    return math.ceil(len(text) / CHARS_PER_TOKEN)


# -- streams -----------------------------------------------------------------------------------------


class _StreamTracker:
    """Usage seen on one stream; reports exactly once (complete, or partial when abandoned)."""

    def __init__(self, client: GuardedBedrockClient, call: _Call, request_id: str, kind: str) -> None:
        self.client = client
        self.call = call
        self.request_id = request_id
        self.kind = kind  # "converse" or "invoke"
        self.final: Usage | None = None
        self.started: Usage | None = None  # Anthropic message_start usage
        self.output_so_far = 0
        self.chars = 0
        self.deltas = 0
        self._done = False
        self._lock = threading.Lock()

    def see(self, event: Mapping[str, Any]) -> None:
        try:
            if self.kind == "converse":
                self._see_converse(event)
            else:
                self._see_invoke(event)
        except Exception:  # an event we do not understand must never break the caller's stream
            logger.debug("guardrail could not read a stream event", exc_info=True)

    def _see_converse(self, event: Mapping[str, Any]) -> None:
        if "contentBlockDelta" in event:
            delta = event["contentBlockDelta"].get("delta", {})
            self.deltas += 1
            text = delta.get("text") or (delta.get("toolUse") or {}).get("input") or ""
            reasoning = (delta.get("reasoningContent") or {}).get("text") or ""
            self.chars += len(text) + len(reasoning)
        elif "metadata" in event:
            self.final = converse_usage(event["metadata"].get("usage"))

    def _see_invoke(self, event: Mapping[str, Any]) -> None:
        chunk = event.get("chunk")
        if not chunk or "bytes" not in chunk:
            return
        doc = json.loads(chunk["bytes"])
        if not isinstance(doc, dict):
            return
        kind = doc.get("type")
        if kind == "message_start":
            self.started = anthropic_usage((doc.get("message") or {}).get("usage"))
        elif kind == "content_block_delta":
            delta = doc.get("delta") or {}
            self.deltas += 1
            self.chars += len(delta.get("text") or delta.get("partial_json") or delta.get("thinking") or "")
        elif kind == "message_delta":
            self.output_so_far = max(self.output_so_far, _int((doc.get("usage") or {}).get("output_tokens")))
        metrics = invocation_metrics_usage(doc.get(INVOCATION_METRICS))
        if metrics is not None:
            started = self.started
            if started is not None and not (metrics.cache_read_tokens or metrics.cache_write_tokens):
                metrics = Usage(
                    metrics.input_tokens,
                    metrics.output_tokens,
                    started.cache_read_tokens,
                    started.cache_write_tokens,
                )
            self.final = metrics

    def usage(self) -> tuple[Usage, bool]:
        """(usage, partial)."""
        if self.final is not None:
            return self.final, False
        output = max(self.output_so_far, self.deltas, math.ceil(self.chars / CHARS_PER_TOKEN))
        started = self.started
        if started is not None:
            output = max(output, started.output_tokens)
            return Usage(started.input_tokens, output, started.cache_read_tokens, started.cache_write_tokens), True
        return Usage(estimate_input_tokens(self.call.operation, self.call.kwargs), output), True

    def finish(self) -> None:
        with self._lock:
            if self._done:
                return
            self._done = True
        usage, partial = self.usage()
        if partial:
            logger.warning(
                "guardrail: stream %s (%s) ended before its usage arrived; reporting the %d output tokens it "
                "saw, marked partial",
                self.request_id,
                self.call.model_id,
                usage.output_tokens,
            )
        self.client._complete(self.call, self.request_id, usage, partial=partial)


class GuardedStream:
    """Iterates the wrapped event stream unchanged while noting its usage.

    Reports when the stream ends; when the caller stops early (break, exception, close(), or dropping
    the stream) it reports the tokens seen so far, marked partial, and closes the connection."""

    def __init__(self, inner: Any, tracker: _StreamTracker) -> None:
        self._inner = inner
        self._tracker = tracker
        self._finalizer = weakref.finalize(self, _abandon, inner, tracker)

    def __iter__(self) -> Iterator[Any]:
        tracker = self._tracker
        finished = False
        try:
            for event in self._inner:
                tracker.see(event)
                yield event
            finished = True
        finally:
            tracker.finish()
            if not finished:
                _close(self._inner)

    def close(self) -> None:
        self._finalizer()

    def __enter__(self) -> GuardedStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def _abandon(inner: Any, tracker: _StreamTracker) -> None:
    tracker.finish()
    _close(inner)


def _close(inner: Any) -> None:
    close = getattr(inner, "close", None)
    if close is not None:
        try:
            close()
        except Exception:
            logger.debug("closing an abandoned stream failed", exc_info=True)


# -- reporting -----------------------------------------------------------------------------------------


class _Reporter:
    """Runs a sink over reports: on one background thread (batched by whatever queued meanwhile) or
    inline. A sink returns the reports to retry; each gets `max_attempts` tries, then is dropped
    (logged: the invocation log still counts it)."""

    def __init__(
        self,
        sink: Callable[[list[_Report]], list[_Report]],
        on_drop: Callable[[list[_Report]], None],
        *,
        background: bool,
        max_attempts: int,
        max_batch: int = 100,
    ) -> None:
        self.sink = sink
        self.on_drop = on_drop
        self.background = background
        self.max_attempts = max_attempts
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue[_Report | threading.Event | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def submit(self, report: _Report) -> None:
        if not self.background:
            retry = self._process([report])
            while retry:
                time.sleep(_backoff(retry[0].attempts))
                retry = self._process(retry)
            return
        if self._thread is None:
            self._start()
        self._queue.put(report)

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is None:
                thread = threading.Thread(target=self._loop, name="guardrail-usage-reporter", daemon=True)
                thread.start()
                self._thread = thread
                atexit.register(self.flush, 2.0)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything submitted so far has been reported (or dropped)."""
        if self._thread is None:
            return True
        done = threading.Event()
        self._queue.put(done)
        return done.wait(timeout)

    def _loop(self) -> None:
        retry: list[_Report] = []
        while True:
            items: list[_Report | threading.Event | None] = []
            try:
                items.append(self._queue.get(timeout=_backoff(retry[0].attempts) if retry else None))
                while len(items) < self.max_batch:
                    items.append(self._queue.get_nowait())
            except queue.Empty:
                pass
            waiters = [i for i in items if isinstance(i, threading.Event)]
            batch = retry + [i for i in items if isinstance(i, _Report)]
            retry = self._process(batch) if batch else []
            if waiters:
                while retry:  # a flush waits for retries to succeed or be given up
                    time.sleep(_backoff(retry[0].attempts))
                    retry = self._process(retry)
                for waiter in waiters:
                    waiter.set()

    def _process(self, batch: list[_Report]) -> list[_Report]:
        """Report a batch; return what to retry."""
        try:
            failed = self.sink(batch)
        except Exception:
            logger.exception("guardrail usage reporting failed; will retry")
            failed = batch
        for r in failed:
            r.attempts += 1
        give_up = [r for r in failed if r.attempts >= self.max_attempts]
        if give_up:
            logger.error(
                "guardrail gave up reporting %d usage records after %d attempts (request ids %s); "
                "the invocation log still counts them",
                len(give_up),
                self.max_attempts,
                ", ".join(r.record.request_id for r in give_up[:5]),
            )
            self.on_drop(give_up)
        return [r for r in failed if r.attempts < self.max_attempts]


def _backoff(attempts: int) -> float:
    return float(min(2.0, 0.05 * 2**attempts))


class EventSink:
    """`Bedrock Usage` events on EventBridge, 10 per PutEvents."""

    def __init__(self, events: EventBridgeClient, bus: str, spend: LocalSpend, timer: Callable[[], float]) -> None:
        self.events = events
        self.bus = bus
        self.spend = spend
        self.timer = timer

    def __call__(self, batch: list[_Report]) -> list[_Report]:
        failed: list[_Report] = []
        for i in range(0, len(batch), MAX_EVENTS_PER_PUT):
            chunk = batch[i : i + MAX_EVENTS_PER_PUT]
            entries = [
                {
                    "Source": USAGE_EVENT_SOURCE,
                    "DetailType": USAGE_DETAIL_TYPE,
                    "Detail": UsageEventDetail.from_record(r.record).model_dump_json(),
                    "EventBusName": self.bus,
                    "Time": r.record.timestamp,
                }
                for r in chunk
            ]
            try:
                resp = self.events.put_events(Entries=entries)  # type: ignore[arg-type]
            except Exception as exc:
                logger.warning("guardrail: PutEvents failed (%s); will retry", exc)
                failed.extend(chunk)
                continue
            sent_at = self.timer()
            results = resp.get("Entries", [])
            ok = []
            for report, result in zip(chunk, results, strict=False):
                if result.get("ErrorCode"):
                    failed.append(report)
                else:
                    ok.append(report)
            failed.extend(chunk[len(results) :])
            self.spend.sent([(r.books, r.cost) for r in ok], sent_at)
        return failed


class LedgerSink:
    """Direct ledger writes through the engine: the same dedupe, thresholds and transitions as logs."""

    def __init__(self, engine: Engine, spend: LocalSpend, flags: FlagCache, timer: Callable[[], float]) -> None:
        self.engine = engine
        self.spend = spend
        self.flags = flags
        self.timer = timer

    def __call__(self, batch: list[_Report]) -> list[_Report]:
        read_at = self.timer()
        result = self.engine.ingest([r.record for r in batch])
        totals = {(t.scope, t.window): t for t in result.totals.values()}
        self.spend.written([(r.books, r.cost) for r in batch], totals, read_at)
        for committed in result.transitions:
            self.flags.put_flag(committed.after)
            logger.warning(
                "guardrail: %s moved %s -> %s (%s)",
                committed.after.scope,
                committed.before.level.label,
                committed.after.level.label,
                committed.transition.reason,
            )
        return []


# -- the client ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Windows:
    """The current window of each scope of a scope set: counter keys, book names, and until when."""

    keys: tuple[CounterKey, ...] = ()
    books: tuple[str, ...] = ()
    cache_key: str = ""
    valid_until: float = -1.0


@dataclass(frozen=True, slots=True)
class _Verdict:
    """What one flag snapshot means for calls: evaluated once per snapshot, not once per call."""

    views: tuple[ScopeView, ...]
    limits: tuple[Decimal | None, ...]
    downgrades: dict[str, str] | None
    throttled_scope: str
    refuse: tuple[str, ScopeView] | None
    cacheable: bool


class _ScopeSet:
    """The scopes one metadata selects, their current windows, and the verdict of the last flags."""

    __slots__ = ("scopes", "verdict", "windows")

    def __init__(self, scopes: tuple[tuple[str, Budget], ...]) -> None:
        self.scopes = scopes
        self.windows = _Windows()
        self.verdict: _Verdict | None = None


class GuardedBedrockClient:
    """A boto3 `bedrock-runtime` client that obeys the guardrail. Thread-safe; share one per process."""

    def __init__(
        self,
        bedrock: BedrockRuntimeClient,
        *,
        metadata: Mapping[str, str] | None = None,
        caller: str = "",
        settings: Settings | None = None,
        options: ClientOptions | None = None,
        dynamodb: DynamoDBClient | None = None,
        events: EventBridgeClient | None = None,
        engine: Engine | None = None,
        flag_cache: FlagCache | None = None,
        pricer: Pricer | None = None,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        from guardrail import aws
        from guardrail.config import load_settings

        self._bedrock = bedrock
        self.settings = settings or load_settings()
        self.options = options or ClientOptions()
        self.metadata = {str(k): str(v) for k, v in (metadata or {}).items()}
        self.caller = caller
        self.region = str(getattr(getattr(bedrock, "meta", None), "region_name", "") or "")
        self._timer = timer
        self._zone = self.settings.zone
        self._resolver = ScopeResolver(self.settings.budget_list())
        self._scope_cache: dict[tuple[tuple[str, str], ...], _ScopeSet] = {}
        self._default_scopes = self._scopes(self.metadata)
        self._downgrades: dict[tuple[str, tuple[tuple[str, str], ...]], str | None] = {}
        self._tags = _request_metadata(self.metadata) if self.options.tag_requests else {}
        self.spend = LocalSpend(reserve_in_flight=self.options.reserve_in_flight, clock=timer)

        opts = self.options
        if flag_cache is None:
            flag_client = dynamodb or aws.client("dynamodb", connect_timeout=0.5, read_timeout=1, max_attempts=2)
            flag_cache = FlagCache(
                DynamoFlagSource(flag_client, self.settings.table_name),
                ttl=opts.flag_ttl,
                max_stale=opts.max_stale,
                fail_mode=opts.fail_mode,
                read_timeout=opts.flag_read_timeout,
                timer=timer,
            )
        if flag_cache.on_read is None:
            flag_cache.on_read = self.spend.observe
        self.flags = flag_cache

        sink: Callable[[list[_Report]], list[_Report]]
        if opts.report == "ledger":
            if engine is None:
                from guardrail.engine import Engine

                engine = Engine(
                    self.settings,
                    dynamodb=dynamodb or aws.client("dynamodb"),
                    bedrock_factory=lambda: aws.client("bedrock"),
                )
            self.engine: Engine | None = engine
            self.pricer = pricer or engine.pricer
            sink = LedgerSink(engine, self.spend, flag_cache, timer)
        elif opts.report == "events":
            self.engine = None
            if pricer is None:
                from guardrail.pricing import Pricer

                pricer = Pricer(
                    overrides=self.settings.price_overrides,
                    ceiling=self.settings.ceiling_rate,
                    bedrock_factory=lambda: aws.client("bedrock"),
                )
            self.pricer = pricer
            sink = EventSink(events or aws.client("events"), opts.event_bus, self.spend, timer)
        else:
            raise ValueError(f"report must be 'events' or 'ledger', not {opts.report!r}")
        self._reporter = _Reporter(
            sink,
            lambda dropped: self.spend.dropped([(r.books, r.cost) for r in dropped]),
            background=opts.background,
            max_attempts=opts.max_report_attempts,
        )

    # -- the four guarded operations --------------------------------------------------------------

    def converse(self, **kwargs: Unpack[ConverseRequestTypeDef]) -> ConverseResponseTypeDef:
        call = self._admit("converse", cast(dict[str, Any], kwargs))
        try:
            resp = cast(dict[str, Any], self._bedrock.converse(**call.kwargs))
        except BaseException:
            self.spend.release(call.ticket)
            raise
        self._note_downgrade(call, resp)
        self._complete(call, _request_id(resp), converse_usage(resp.get("usage")))
        return cast("ConverseResponseTypeDef", resp)

    def converse_stream(self, **kwargs: Unpack[ConverseStreamRequestTypeDef]) -> ConverseStreamResponseTypeDef:
        call = self._admit("converse_stream", cast(dict[str, Any], kwargs))
        try:
            resp = cast(dict[str, Any], self._bedrock.converse_stream(**call.kwargs))
        except BaseException:
            self.spend.release(call.ticket)
            raise
        self._note_downgrade(call, resp)
        resp["stream"] = GuardedStream(resp["stream"], _StreamTracker(self, call, _request_id(resp), "converse"))
        return cast("ConverseStreamResponseTypeDef", resp)

    def invoke_model(self, **kwargs: Unpack[InvokeModelRequestTypeDef]) -> InvokeModelResponseTypeDef:
        call = self._admit("invoke_model", cast(dict[str, Any], kwargs))
        try:
            resp = cast(dict[str, Any], self._bedrock.invoke_model(**call.kwargs))
            body = resp["body"].read()
        except BaseException:
            self.spend.release(call.ticket)
            raise
        from botocore.response import StreamingBody

        resp["body"] = StreamingBody(io.BytesIO(body), len(body))  # the caller reads it as usual
        self._note_downgrade(call, resp)
        headers = resp.get("ResponseMetadata", {}).get("HTTPHeaders", {})
        self._complete(call, _request_id(resp), invoke_model_usage(headers, body))
        return cast("InvokeModelResponseTypeDef", resp)

    def invoke_model_with_response_stream(
        self, **kwargs: Unpack[InvokeModelWithResponseStreamRequestTypeDef]
    ) -> InvokeModelWithResponseStreamResponseTypeDef:
        call = self._admit("invoke_model_with_response_stream", cast(dict[str, Any], kwargs))
        try:
            resp = cast(dict[str, Any], self._bedrock.invoke_model_with_response_stream(**call.kwargs))
        except BaseException:
            self.spend.release(call.ticket)
            raise
        self._note_downgrade(call, resp)
        resp["body"] = GuardedStream(resp["body"], _StreamTracker(self, call, _request_id(resp), "invoke"))
        return cast("InvokeModelWithResponseStreamResponseTypeDef", resp)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._bedrock, name)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every usage report so far has been sent (True) or the timeout passed (False)."""
        return self._reporter.flush(timeout)

    # -- before the call ----------------------------------------------------------------------------

    def _scopes(self, metadata: Mapping[str, str]) -> _ScopeSet:
        key = tuple(sorted(metadata.items()))
        found = self._scope_cache.get(key)
        if found is None:
            probe = UsageRecord(
                request_id="-",
                timestamp=datetime.now(UTC),
                model_id="-",
                input_tokens=0,
                output_tokens=0,
                caller=self.caller,
                metadata=dict(metadata),
            )
            found = self._scope_cache[key] = _ScopeSet(tuple(self._resolver.scopes_for(probe)))
        return found

    def _windows(self, scope_set: _ScopeSet) -> _Windows:
        """The current window of each scope (recomputed only when a window ends)."""
        windows = scope_set.windows
        now = time.time()
        if now < windows.valid_until:
            return windows
        at = datetime.fromtimestamp(now, UTC)
        keys = tuple((scope, window_for(at, budget.window, self._zone)) for scope, budget in scope_set.scopes)
        books = tuple(book_id(k) for k in keys)
        valid_until = min((w.end.timestamp() for _, w in keys), default=now + 3600)
        windows = scope_set.windows = _Windows(keys, books, "\n".join(books), valid_until)
        return windows

    def _verdict(self, scope_set: _ScopeSet, windows: _Windows, views: tuple[ScopeView, ...]) -> _Verdict:
        dry_run = self.settings.dry_run
        downgrades: dict[str, str] | None = None
        limits: list[Decimal | None] = []
        refuse: tuple[str, ScopeView] | None = None
        throttled = ""
        cacheable = True
        for (scope, budget), view, (_, window) in zip(scope_set.scopes, views, windows.keys, strict=True):
            flag = view.flag
            if flag.level is Level.SHUTDOWN and refuse is None:
                refuse = (scope, view)
            if flag.level >= Level.THROTTLE:
                downgrades = {**(downgrades or {}), **(flag.model_downgrades or budget.model_downgrades)}
                throttled = throttled or scope
            if flag.rearm is not None and flag.rearm.snooze_until is not None:
                cacheable = False  # a snooze ends on its own: re-evaluate on every call
            limits.append(None if dry_run else _shutdown_limit(budget, flag, window.key))
        return _Verdict(views, tuple(limits), downgrades, throttled, refuse, cacheable)

    def _admit(self, operation: str, kwargs: dict[str, Any]) -> _Call:
        metadata = self.metadata
        if operation[0] == "c":  # converse, converse_stream: requestMetadata
            extra = kwargs.get("requestMetadata")
            if extra:
                metadata = {**metadata, **extra}
                if self._tags:
                    kwargs = {**kwargs, "requestMetadata": {**self._tags, **extra}}
            elif self._tags:
                kwargs = {**kwargs, "requestMetadata": self._tags}
        scope_set = self._default_scopes if metadata is self.metadata else self._scopes(metadata)
        windows = self._windows(scope_set)
        views = self.flags.views(windows.keys, windows.cache_key)
        verdict = scope_set.verdict
        if verdict is None or verdict.views is not views or not verdict.cacheable:
            verdict = scope_set.verdict = self._verdict(scope_set, windows, views)
        dry_run = self.settings.dry_run
        if verdict.refuse is not None:
            self._refuse(*verdict.refuse, dry_run)
        model_id = str(kwargs.get("modelId", ""))
        downgrade = None
        if verdict.downgrades:
            target = self._downgrade_target(model_id, verdict.downgrades)
            if target is not None:
                if dry_run:
                    logger.warning("guardrail dry-run: would have called %s instead of %s", target, model_id)
                else:
                    downgrade = {
                        "requestedModelId": model_id,
                        "modelId": target,
                        "scope": verdict.throttled_scope,
                        "level": Level.THROTTLE.label,
                    }
                    kwargs = {**kwargs, "modelId": target}
                    model_id = target
        admitted = self.spend.admit(windows.books, verdict.limits, model_id)
        if isinstance(admitted, Refusal):
            raise GuardrailShutdown(
                admitted.scope, Level.SHUTDOWN.label, admitted.reason, reset_command(admitted.scope)
            )
        if downgrade is not None:
            logger.info(
                "guardrail throttle on %s: calling %s instead of %s",
                downgrade["scope"],
                downgrade["modelId"],
                downgrade["requestedModelId"],
            )
        return _Call(operation, kwargs, scope_set, verdict.limits, admitted, metadata, model_id, downgrade)

    def _refuse(self, scope: str, view: ScopeView, dry_run: bool) -> None:
        flag = view.flag
        if view.freshness == "fail-closed":
            how = (
                f"restore this process's access to the flag store (DynamoDB table {self.settings.table_name}, "
                "BatchGetItem), or construct the client with fail_mode='open'"
            )
        else:
            how = reset_command(scope)
        if dry_run:
            logger.warning("guardrail dry-run: would have refused a Bedrock call (%s is shut down)", scope)
            return
        logger.warning("guardrail refused a Bedrock call: %s is shut down (%s)", scope, flag.reason)
        raise GuardrailShutdown(scope, flag.level.label, flag.reason or "shutdown flag is set", how)

    def _downgrade_target(self, model_id: str, downgrades: dict[str, str]) -> str | None:
        key = (model_id, tuple(sorted(downgrades.items())))
        if key not in self._downgrades:
            self._downgrades[key] = downgrade_model_id(model_id, downgrades, self.options.known_models)
        return self._downgrades[key]

    def _note_downgrade(self, call: _Call, resp: dict[str, Any]) -> None:
        if call.downgrade is not None:
            resp.setdefault("ResponseMetadata", {})["Guardrail"] = dict(call.downgrade)

    # -- after the call -----------------------------------------------------------------------------

    def _complete(self, call: _Call, request_id: str, usage: Usage | None, *, partial: bool = False) -> None:
        if usage is None:
            self.spend.release(call.ticket)
            logger.warning(
                "guardrail: no token usage in the %s response %s; the invocation log will count it",
                call.operation,
                request_id,
            )
            return
        model_id = call.model_id
        rates = self.pricer.rates_for(model_id)  # a dict hit after the first call per model
        # Rates.cost reads only the four token counts, which Usage has under the same names.
        cost = rates.cost(cast(UsageRecord, usage))
        books = self._windows(call.scopes).books
        self.spend.complete(call.ticket, cost, books, call.limits, learn=not partial)
        fields = (request_id, model_id, usage, self.region, self.caller, call.metadata, partial)
        self._reporter.submit(_Report(fields, time.time(), books, cost))


def _shutdown_limit(budget: Budget, flag: Flag, window_key: str) -> Decimal | None:
    """The spend at which this scope shuts down in this window (None while a reset snooze lasts)."""
    rearm = flag.rearm
    if rearm is None or rearm.window_key != window_key:
        return budget.thresholds.shutdown
    if rearm.snooze_until is not None and datetime.now(UTC) < rearm.snooze_until:
        return None
    return budget.thresholds.shutdown + rearm.baseline_spend


def _request_id(resp: Mapping[str, Any]) -> str:
    meta = resp.get("ResponseMetadata") or {}
    rid = meta.get("RequestId") or (meta.get("HTTPHeaders") or {}).get("x-amzn-requestid")
    if rid:
        return str(rid)
    logger.warning("guardrail: Bedrock response without a request id; it cannot dedupe with the invocation log")
    return f"client-{uuid.uuid4()}"


def _request_metadata(metadata: Mapping[str, str]) -> dict[str, str]:
    """The client's metadata that Converse accepts as requestMetadata (16 pairs, a restricted alphabet)."""
    out = {
        k: v
        for k, v in metadata.items()
        if 1 <= len(k) <= 256 and _REQUEST_METADATA_TEXT.fullmatch(k) and _REQUEST_METADATA_TEXT.fullmatch(v)
    }
    return dict(list(out.items())[:16])


def guard(
    bedrock: BedrockRuntimeClient | None = None,
    *,
    metadata: Mapping[str, str] | None = None,
    **kwargs: Any,
) -> GuardedBedrockClient:
    """Wrap a boto3 `bedrock-runtime` client (created with default settings when omitted)."""
    if bedrock is None:
        import boto3

        bedrock = boto3.client("bedrock-runtime")
    return GuardedBedrockClient(bedrock, metadata=metadata, **kwargs)


__all__ = [
    "ClientOptions",
    "EventSink",
    "GuardedBedrockClient",
    "GuardedStream",
    "LedgerSink",
    "Usage",
    "guard",
]
