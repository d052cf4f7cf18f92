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
reached (see `guardrail.client.local_spend`). With `ClientOptions(leases=True)` a call also spends from
this process's budget leases, so that all processes together stop at the threshold (`guardrail.client.leases`,
docs/leases.md). `converse` and `invoke_model` admit and settle the common call inline (`guardrail.client.lanes`:
exactly what the general path would do, for a fraction of its CPU); any other call takes the general path.

After each call: usage (Converse `usage`, the ConverseStream `metadata` event, InvokeModel headers and the
Anthropic body `usage`, stream `amazon-bedrock-invocationMetrics`) is priced exactly and reported on a
background thread, as an EventBridge `Bedrock Usage` event (`report="events"`) or straight into the ledger
through the engine (`report="ledger"`). Both dedupe with the invocation log on the Bedrock request id.
A stream the caller abandons is reported with the tokens it saw, marked partial.
"""

from __future__ import annotations

import atexit
import io
import logging
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

from guardrail.client.admission import Call, ScopeSet, Verdict, Windows, decide, request_metadata
from guardrail.client.flag_cache import FlagCache, ScopeView
from guardrail.client.identity import CallerIdentity
from guardrail.client.lanes import NO_ENTRY, Lane, closed_lane
from guardrail.client.leases import LeaseCharge, LeaseRefusal, Leases
from guardrail.client.ledger_mode import service_ledger
from guardrail.client.local_spend import EWMA_SHIFT, LocalSpend, Refusal, Ticket, book_id
from guardrail.client.options import ClientOptions
from guardrail.client.reporting import (
    MAX_EVENTS_PER_PUT,
    EventSink,
    LedgerSink,
    Reporter,
    reporter_events_client,
)
from guardrail.client.streams import GuardedStream, StreamTracker
from guardrail.client.unit_pricing import UnitRates, unit_rates
from guardrail.client.usage import Usage, converse_usage, invoke_model_usage, with_tier
from guardrail.client.usage import request_id as response_id
from guardrail.client.usage_report import UsageReport
from guardrail.core.downgrade import downgrade_model_id
from guardrail.core.errors import GuardrailShutdown
from guardrail.core.models import Level, UsageRecord, reset_command
from guardrail.core.ports import LedgerWriter
from guardrail.core.scopes import ScopeResolver
from guardrail.core.windows import window_for
from guardrail.store.flag_reader import DynamoFlagSource

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
    from mypy_boto3_sts import STSClient

    from guardrail.core.config import Settings
    from guardrail.core.pricing import Pricer

logger = logging.getLogger("guardrail.client")
LEASE_ITEM_DAYS = 1  # a lease item outlives its window by this long (TTL), then DynamoDB deletes it


class GuardedBedrockClient:
    """A boto3 `bedrock-runtime` client that obeys the guardrail. Thread-safe; share one per process."""

    def __init__(
        self,
        bedrock: BedrockRuntimeClient,
        *,
        metadata: Mapping[str, str] | None = None,
        caller: str | None = None,
        settings: Settings | None = None,
        options: ClientOptions | None = None,
        dynamodb: DynamoDBClient | None = None,
        events: EventBridgeClient | None = None,
        sts: Callable[[], STSClient] | None = None,
        ledger: LedgerWriter | None = None,
        flag_cache: FlagCache | None = None,
        pricer: Pricer | None = None,
        timer: Callable[[], float] = time.monotonic,
        clock: Callable[[], float] | None = None,
    ) -> None:
        """`timer` (monotonic seconds) paces caches and reports; `clock` (epoch seconds) picks windows and
        ends snoozes. `ledger` is what report="ledger" writes through (default: the service's usage path
        built from these settings, see guardrail.service.client_sink)."""
        from guardrail.core.config import load_settings
        from guardrail.store import aws_clients as aws

        self._bedrock = bedrock
        self.settings = settings or load_settings()
        self.options = options or ClientOptions()
        self.metadata = {str(k): str(v) for k, v in (metadata or {}).items()}
        # None: the client's own AWS identity, resolved once at the first report (STS, cached).
        self.identity = CallerIdentity(caller, sts, timer)
        self.region = str(getattr(getattr(bedrock, "meta", None), "region_name", "") or "")
        self._timer = timer
        self._clock = clock or _wall_clock
        self._wall = clock is None  # the hot path then reads time.time() itself (no call to _wall_clock)
        self._zone = self.settings.zone
        self._resolver = ScopeResolver(self.settings.budget_list())
        self._scope_cache: dict[tuple[tuple[str, str], ...], ScopeSet] = {}
        self._default_scopes = self._scopes(self.metadata)
        self._lane = closed_lane()  # the first call builds the fast lane of the default scopes
        self._downgrades: dict[tuple[str, tuple[tuple[str, str], ...]], str | None] = {}
        self._tags = request_metadata(self.metadata) if self.options.tag_requests else {}
        self.spend = LocalSpend(reserve_in_flight=self.options.reserve_in_flight, clock=timer)

        opts = self.options
        store_client = dynamodb
        if flag_cache is None or (opts.leases and store_client is None):
            store_client = dynamodb or aws.client("dynamodb", connect_timeout=0.5, read_timeout=1, max_attempts=2)
        if flag_cache is None:
            assert store_client is not None
            flag_client = store_client
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
        self.leases: Leases | None = None
        if opts.leases:
            assert store_client is not None
            self.leases = self._build_leases(store_client)

        if pricer is None:
            from guardrail.core.pricing import Pricer

            pricer = Pricer(
                overrides=self.settings.price_overrides,
                ceiling=self.settings.ceiling_rate,
                bedrock_factory=lambda: aws.client("bedrock"),
            )
        self.pricer = pricer
        self._unit_rates: dict[str, UnitRates] = {}  # per model id, while the pricer's rates do not expire
        self._dry_run = self.settings.dry_run
        sink: Callable[[list[UsageReport]], list[UsageReport]]
        if opts.report == "ledger":
            self.ledger = ledger or service_ledger(self.settings, dynamodb)
            sink = LedgerSink(self.ledger, self.spend, flag_cache, timer)
        elif opts.report == "events":
            bus = opts.event_bus or self.settings.usage_event_bus  # only named reporters may put there
            packing = opts.report_packing
            sink = EventSink(events or reporter_events_client(), bus, self.spend, timer, packing=packing)
        else:
            raise ValueError(f"report must be 'events' or 'ledger', not {opts.report!r}")
        by_events = opts.report == "events"
        self._reporter = Reporter(
            sink,
            lambda dropped: self.spend.dropped([(r.books, r.units) for r in dropped]),
            background=opts.background,
            max_attempts=opts.max_report_attempts,
            max_batch=MAX_EVENTS_PER_PUT * opts.report_packing if by_events else 100,  # one full PutEvents
            linger=opts.report_linger if by_events else 0.0,
            exit_timeout=opts.exit_flush_seconds,
        )
        # Streams still open at exit report what they generated (partial) before the exit flush.
        self._open_streams: weakref.WeakSet[StreamTracker] = weakref.WeakSet()
        self._reporter.before_exit.append(self._finish_open_streams)

    def _build_leases(self, store_client: DynamoDBClient) -> Leases:
        from guardrail.core.leases import LeasePolicy
        from guardrail.store.leases import DynamoLeaseStore

        opts = self.options
        policy = LeasePolicy(
            ttl=opts.lease_ttl,
            divisor=opts.lease_divisor,
            min_slice=opts.lease_min_slice,
            max_slice=opts.lease_max_slice,
            margin=min(2.0, opts.lease_ttl / 4),
        )
        leases = Leases(
            DynamoLeaseStore(store_client, self.settings.table_name),
            policy,
            clock=self._clock,
            item_expires=lambda key: int(key[1].end.timestamp()) + LEASE_ITEM_DAYS * 86400,
            wait=opts.lease_wait,
            fail_mode=opts.fail_mode,
            lock=self.spend.lock,
        )
        # Unspent slices go back at exit; the hook holds the leases weakly (a dropped client returns them
        # when its slices expire).
        atexit.register(_close_leases, weakref.ref(leases))
        return leases

    # -- the four guarded operations --------------------------------------------------------------

    def converse(self, **kwargs: Unpack[ConverseRequestTypeDef]) -> ConverseResponseTypeDef:
        return self._lane_call("converse", kwargs)  # type: ignore[arg-type,return-value]

    def invoke_model(self, **kwargs: Unpack[InvokeModelRequestTypeDef]) -> InvokeModelResponseTypeDef:
        return self._lane_call("invoke_model", kwargs)  # type: ignore[arg-type,return-value]

    def _lane_call(self, operation: str, kwargs: dict[str, Any]) -> dict[str, Any]:
        """converse or invoke_model by the fast lane (guardrail.client.lanes): the client's own metadata, fresh
        flags with nothing to refuse or downgrade, a slice at hand, standard usage; inline, without a
        typing.cast (a call, and a generic alias built, per use). Everything else takes the general path,
        `_converse` or `_invoke_model`."""
        converse = operation == "converse"
        now = time.time() if self._wall else self._clock()
        lane, flags = self._lane, self.flags
        entry = flags.entries.get(lane.cache_key)
        if entry is not lane.entry or flags.timer() >= entry[0] or now >= lane.valid_until:
            lane = self._new_lane(now)
        model_id = kwargs.get("modelId")
        if not lane.fast or "requestMetadata" in kwargs or type(model_id) is not str:
            return self._general(converse, kwargs)
        spend = self.spend
        estimate = spend.estimates.get(model_id, 0)
        reserved = estimate if spend.reserve_in_flight else 0
        need = estimate or 1  # (integers) a slice's free part covers the estimate, and is positive
        admitted = True
        lock = spend.lock
        if not lock.raw.acquire(False):
            lock.acquire_contended()
        try:  # LocalSpend.admit_locked, then Leases.take_locked, for a call both admit without a word
            for book, lease, limit in lane.checks:
                spent = book.known + book.unreported + book.sent_total + book.in_flight
                if spent >= limit or book.crossed_at is not None:
                    admitted = False  # refused, or admitted after a crossing (counted): theirs to say
                    break
                if lease is not None and (
                    now >= lease.valid_until or lease.unspent_units - lease.in_flight_units < need
                ):
                    admitted = False  # a slice to lease first
                    break
            else:
                if reserved:
                    for book in lane.books:
                        book.in_flight += reserved
                for lease in lane.leases:
                    lease.in_flight_units += estimate
        finally:
            lock.raw.release()
        if not admitted:
            return self._general(converse, kwargs)
        tags = self._tags
        try:
            if converse:
                resp: dict[str, Any] = self._bedrock.converse(  # type: ignore[assignment]
                    **({**kwargs, "requestMetadata": tags} if tags else kwargs)
                )
            else:
                resp = self._bedrock.invoke_model(**kwargs)  # type: ignore[assignment]
                body = resp["body"].read()
        except BaseException:
            spend.release(self._lane_ticket(lane, model_id, reserved, estimate))
            raise
        usage: Usage | None = None
        if converse:
            # The usual usage (plain non-negative ints, no cache writes) read here, without a call: Python calls
            # cost most right after a Bedrock call, on cold caches; anything else is converse_usage's to read.
            u = resp.get("usage")
            if type(u) is dict:
                i, o, r = u.get("inputTokens"), u.get("outputTokens", 0), u.get("cacheReadInputTokens", 0)
                # (i | o | r) >= 0: the bitwise or of ints is negative when one of them is.
                plain = type(i) is int and type(o) is int and type(r) is int and not u.get("cacheWriteInputTokens")
                if plain and (i | o | r) >= 0:
                    usage = _new_tuple(Usage, (i, o, r, 0, 0, "", False))
            meta = resp.get("ResponseMetadata")
            request_id = meta.get("RequestId") if type(meta) is dict else None
            standard = resp.get("serviceTier") is None and resp.get("performanceConfig") is None
        else:
            resp["body"] = _body(body)  # the caller reads it as usual
            request_id, usage = self._invoke_model_usage(resp, body)
            standard = usage is not None and not usage.service_tier and not usage.latency_optimized
        now = time.time() if self._wall else self._clock()
        if (
            usage is None
            or not standard
            or type(request_id) is not str
            or not request_id
            or now >= lane.valid_until  # a window ended: the general path counts it in the new one
        ):
            ticket = self._lane_ticket(lane, model_id, reserved, estimate)
            call = (operation, kwargs, self._default_scopes, lane.limits, ticket, self.metadata, model_id, None)
            read = self._converse_usage(resp, usage) if converse else (request_id, usage)
            self._complete(_new_tuple(Call, call), *read)
            return resp
        found = self._unit_rates.get(model_id)  # rates that never expire are asked for once per model
        cost = (found if found is not None and not found.rates.expires else self._price_model(model_id)).cost(usage)
        if not lock.raw.acquire(False):
            lock.acquire_contended()
        try:  # LocalSpend.complete_locked with the ticket's lease charge, for the books it was admitted in
            for book, cap in lane.settle:
                book.in_flight -= reserved
                book.unreported += cost
                if (
                    cap is not None
                    and book.crossed_at is None
                    and book.known + book.unreported + book.sent_total >= cap
                ):
                    book.crossed_at = spend.clock()
            for lease in lane.leases:
                lease.in_flight_units -= estimate
                lease.unspent_units -= cost
            estimates = spend.estimates
            old = estimates.get(model_id)
            if old != cost:
                # Rounded up (a unit at most): an estimate never falls short of a run of equal costs.
                estimates[model_id] = cost if old is None else old - ((old - cost) >> EWMA_SHIFT)
        finally:
            lock.raw.release()
        report = (request_id, model_id, usage, self.region, self.identity, self.metadata, False, now, lane.names, cost)
        self._reporter.enqueue(_new_tuple(UsageReport, report))
        return resp

    def _general(self, converse: bool, kwargs: dict[str, Any]) -> dict[str, Any]:
        return self._converse(kwargs) if converse else self._invoke_model(kwargs)  # type: ignore[return-value]

    def _converse(self, kwargs: dict[str, Any]) -> ConverseResponseTypeDef:
        """`converse` by the general path."""
        call = self._admit("converse", kwargs)
        try:
            resp: dict[str, Any] = self._bedrock.converse(**call.kwargs)  # type: ignore[assignment]
        except BaseException:
            self._release(call)
            raise
        self._note_downgrade(call, resp)
        self._complete(call, *self._converse_usage(resp, None))
        return resp  # type: ignore[return-value]

    def _converse_usage(self, resp: dict[str, Any], usage: Usage | None) -> tuple[str, Usage | None]:
        """A Converse response's request id and usage (`usage`: the plain usage read already, or None)."""
        if usage is None:
            usage = converse_usage(resp.get("usage"))
        tier, performance = resp.get("serviceTier"), resp.get("performanceConfig")
        if tier is not None or performance is not None:
            usage = with_tier(usage, tier, (performance or {}).get("latency"))
        meta = resp.get("ResponseMetadata")
        request_id = meta.get("RequestId") if type(meta) is dict else None
        if type(request_id) is not str or not request_id:
            request_id = response_id(resp)  # in the headers, or none
        return request_id, usage

    def converse_stream(self, **kwargs: Unpack[ConverseStreamRequestTypeDef]) -> ConverseStreamResponseTypeDef:
        call = self._admit("converse_stream", cast(dict[str, Any], kwargs))
        try:
            resp = cast(dict[str, Any], self._bedrock.converse_stream(**call.kwargs))
        except BaseException:
            self._release(call)
            raise
        self._note_downgrade(call, resp)
        resp["stream"] = GuardedStream(resp["stream"], self._tracker(call, response_id(resp), "converse"))
        return cast("ConverseStreamResponseTypeDef", resp)

    def _invoke_model(self, kwargs: dict[str, Any]) -> InvokeModelResponseTypeDef:
        """`invoke_model` by the general path."""
        call = self._admit("invoke_model", kwargs)
        try:
            resp = cast(dict[str, Any], self._bedrock.invoke_model(**call.kwargs))
            body = resp["body"].read()
        except BaseException:
            self._release(call)
            raise
        resp["body"] = _body(body)  # the caller reads it as usual
        self._note_downgrade(call, resp)
        self._complete(call, *self._invoke_model_usage(resp, body))
        return cast("InvokeModelResponseTypeDef", resp)

    def _invoke_model_usage(self, resp: dict[str, Any], body: bytes) -> tuple[str, Usage | None]:
        """An InvokeModel response's request id and usage (`body`: what the guard read of it)."""
        headers = resp.get("ResponseMetadata", {}).get("HTTPHeaders", {})
        usage = with_tier(
            invoke_model_usage(headers, body), resp.get("serviceTier"), resp.get("performanceConfigLatency")
        )
        return response_id(resp), usage

    def invoke_model_with_response_stream(
        self, **kwargs: Unpack[InvokeModelWithResponseStreamRequestTypeDef]
    ) -> InvokeModelWithResponseStreamResponseTypeDef:
        call = self._admit("invoke_model_with_response_stream", cast(dict[str, Any], kwargs))
        try:
            resp = cast(dict[str, Any], self._bedrock.invoke_model_with_response_stream(**call.kwargs))
        except BaseException:
            self._release(call)
            raise
        self._note_downgrade(call, resp)
        resp["body"] = GuardedStream(resp["body"], self._tracker(call, response_id(resp), "invoke"))
        return cast("InvokeModelWithResponseStreamResponseTypeDef", resp)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._bedrock, name)

    def _tracker(self, call: Call, request_id: str, kind: str) -> StreamTracker:
        def finish(usage: Usage, partial: bool) -> None:
            self._complete(call, request_id, usage, partial=partial)

        tracker = StreamTracker(call.operation, call.kwargs, call.model_id, request_id, kind, finish)
        self._open_streams.add(tracker)
        return tracker

    def _finish_open_streams(self) -> None:
        for tracker in list(self._open_streams):
            tracker.finish()  # once per stream: a finished one does nothing

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every usage report so far has been sent (True) or the timeout passed (False)."""
        return self._reporter.flush(timeout)

    # -- before the call ----------------------------------------------------------------------------

    def _scopes(self, metadata: Mapping[str, str]) -> ScopeSet:
        key = tuple(sorted(metadata.items()))
        found = self._scope_cache.get(key)
        if found is None:
            probe = UsageRecord(
                request_id="-",
                timestamp=datetime.fromtimestamp(self._clock(), UTC),
                model_id="-",
                input_tokens=0,
                output_tokens=0,
                caller=self.identity.known,
                metadata=dict(metadata),
            )
            found = self._scope_cache[key] = ScopeSet(tuple(self._resolver.scopes_for(probe)))
        return found

    def _windows(self, scope_set: ScopeSet) -> Windows:
        """The current window of each scope (recomputed only when a window ends)."""
        windows = scope_set.windows
        now = self._clock()
        if now < windows.valid_until:
            return windows
        at = datetime.fromtimestamp(now, UTC)
        keys = tuple((scope, window_for(at, budget.window, self._zone)) for scope, budget in scope_set.scopes)
        books = tuple(book_id(k) for k in keys)
        valid_until = min((w.end.timestamp() for _, w in keys), default=now + 3600)
        windows = scope_set.windows = Windows(keys, books, "\n".join(books), valid_until)
        return windows

    def _admit(self, operation: str, kwargs: dict[str, Any]) -> Call:
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
        now = time.time() if self._wall else self._clock()
        windows = scope_set.windows
        if now >= windows.valid_until:
            windows = self._windows(scope_set)
        flags = self.flags
        hit = flags.entries.get(windows.cache_key)  # what flags.views() returns while fresh, without the call
        views = hit[1] if hit is not None and flags.timer() < hit[0] else flags.views(windows.keys, windows.cache_key)
        verdict = self._verdict(scope_set, windows, views, now)
        if verdict.refuse is not None:
            self._refuse(*verdict.refuse, self._dry_run)
        model_id = str(kwargs.get("modelId", ""))
        downgrade = None
        if verdict.downgrades:
            target = self._downgrade_target(model_id, verdict.downgrades)
            if target is not None:
                if self._dry_run:
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
        spend, leases, limits = self.spend, self.leases, verdict.limits
        estimate = spend.estimates.get(model_id, 0)
        ticket: Ticket | None = None
        # One lock section for local accounting and the leases (they share the lock), taken without `with`.
        lock = spend.lock
        if not lock.raw.acquire(False):
            lock.acquire_contended()
        try:
            admitted = spend.admit_locked(windows.books, limits, model_id)
            if type(admitted) is Ticket:
                if leases is None:
                    ticket = admitted
                else:
                    lease = leases.take_locked(windows.keys, windows.books, limits, estimate, now)
                    ticket = None if lease is None else admitted._replace(lease=lease)
        finally:
            lock.raw.release()
        if ticket is None:
            ticket = self._admit_slowly(admitted, windows, verdict, estimate)
        if downgrade is not None:
            logger.info(
                "guardrail throttle on %s: calling %s instead of %s",
                downgrade["scope"],
                downgrade["modelId"],
                downgrade["requestedModelId"],
            )
        return _new_tuple(Call, (operation, kwargs, scope_set, limits, ticket, metadata, model_id, downgrade))

    def _new_lane(self, now: float) -> Lane:
        """The fast lane of the client's own metadata for the current windows and flags (guardrail.client.lanes)."""
        scope_set, flags, spend, leases = self._default_scopes, self.flags, self.spend, self.leases
        if leases is not None and (leases.lock is not spend.lock or leases.clock is not self._clock):
            # Both paths admit and settle a call's leases under local accounting's lock, on the client's clock.
            raise ValueError("a guarded client's budget leases must use its lock and clock (spend.lock, _clock)")
        windows = scope_set.windows
        if now >= windows.valid_until:
            windows = self._windows(scope_set)
        views = flags.views(windows.keys, windows.cache_key)
        entry = flags.entries.get(windows.cache_key)
        verdict = self._verdict(scope_set, windows, views, now)
        fast = (
            entry is not None
            and entry[1] is views
            and verdict.refuse is None
            and not verdict.downgrades
            and verdict.cacheable
        )
        with spend.lock:
            lane = self._lane = Lane(spend, leases, windows, verdict, entry or NO_ENTRY, fast=fast)
        return lane

    def _lane_ticket(self, lane: Lane, model_id: str, reserved: int, estimate: int) -> Ticket:
        """The ticket of a call the fast lane admitted, for the general path to release or settle."""
        charge = LeaseCharge(lane.leases, estimate) if self.leases is not None else None
        return _new_tuple(Ticket, (lane.books, lane.names, model_id, reserved, charge))

    def _verdict(self, scope_set: ScopeSet, windows: Windows, views: tuple[ScopeView, ...], now: float) -> Verdict:
        """What these flags mean for the scope set's calls (evaluated once per flag snapshot)."""
        verdict = scope_set.verdict
        if verdict is None or verdict.views is not views or not verdict.cacheable:
            verdict = scope_set.verdict = decide(scope_set, windows, views, dry_run=self._dry_run, now=now)
        return verdict

    def _admit_slowly(self, admitted: Ticket | Refusal, windows: Windows, verdict: Verdict, estimate: int) -> Ticket:
        """Local accounting refused the call (raise, with its reason), or a slice must be leased first: take
        the call's estimated cost from the budget leases of its scopes, or refuse it."""
        if isinstance(admitted, Refusal):
            limit = verdict.dollars[windows.books.index(admitted.book)]
            if limit is not None:
                admitted = replace(admitted, limit=limit)  # the threshold as configured, e.g. 25.00
            raise GuardrailShutdown(
                admitted.scope, Level.SHUTDOWN.label, admitted.reason, reset_command(admitted.scope)
            )
        leases = self.leases
        if leases is None:
            return admitted
        charge = leases.admit_units(windows.keys, windows.books, verdict.limits, estimate)
        if isinstance(charge, LeaseRefusal):
            self.spend.release(admitted)
            logger.warning("guardrail refused a Bedrock call: %s (%s)", charge.scope, charge.reason)
            raise GuardrailShutdown(charge.scope, Level.SHUTDOWN.label, charge.reason, reset_command(charge.scope))
        return admitted._replace(lease=charge)

    def _release(self, call: Call) -> None:
        """The call cost nothing (it failed before Bedrock charged, or reported no usage)."""
        self.spend.release(call.ticket)

    def close(self) -> None:
        """Return this client's unspent budget leases now (also done at exit). Calls after it lease again."""
        if self.leases is not None:
            self.leases.close()

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

    def _note_downgrade(self, call: Call, resp: dict[str, Any]) -> None:
        if call.downgrade is not None:
            resp.setdefault("ResponseMetadata", {})["Guardrail"] = dict(call.downgrade)

    # -- after the call -----------------------------------------------------------------------------

    def _complete(self, call: Call, request_id: str, usage: Usage | None, *, partial: bool = False) -> None:
        if usage is None:
            self._release(call)
            logger.warning(
                "guardrail: no token usage in the %s response %s; the invocation log will count it",
                call.operation,
                request_id,
            )
            return
        model_id = call.model_id
        if usage.service_tier or usage.latency_optimized:
            rates = self.pricer.rates_for(model_id)
            unit = unit_rates(self.pricer.variant(rates, model_id, usage.service_tier, usage.latency_optimized))
        else:
            found = self._unit_rates.get(model_id)  # rates that never expire are asked for once per model
            unit = found if found is not None and not found.rates.expires else self._price_model(model_id)
        cost = unit.cost(usage)  # units: exact integers (guardrail.client.unit_pricing)
        now = time.time() if self._wall else self._clock()
        windows = call.scopes.windows
        books = (windows if now < windows.valid_until else self._windows(call.scopes)).books
        spend = self.spend
        lock = spend.lock  # the leases share it: settling the ticket settles its lease charge too
        if not lock.raw.acquire(False):
            lock.acquire_contended()
        try:
            spend.complete_locked(call.ticket, cost, books, call.limits, learn=not partial)
        finally:
            lock.raw.release()
        report = (request_id, model_id, usage, self.region, self.identity, call.metadata, partial, now, books, cost)
        self._reporter.enqueue(_new_tuple(UsageReport, report))

    def _price_model(self, model_id: str) -> UnitRates:
        unit = self._unit_rates[model_id] = unit_rates(self.pricer.rates_for(model_id))
        return unit


_new_tuple = tuple.__new__  # a NamedTuple built without the Python call of its __new__


def _close_leases(ref: weakref.ref[Leases]) -> None:
    leases = ref()
    if leases is not None:
        leases.close()


def _body(body: bytes) -> Any:
    """The InvokeModel body the guard read, as a new botocore StreamingBody for the caller to read."""
    from botocore.response import StreamingBody

    return StreamingBody(io.BytesIO(body), len(body))


def _wall_clock() -> float:
    return time.time()  # looked up per call, so a patched clock (tests) is the one used


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
