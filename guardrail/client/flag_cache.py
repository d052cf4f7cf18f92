"""The guarded client's view of the flag store: a thread-safe TTL cache that never hangs a caller.

- One store read per TTL per process, however many threads wait: the first thread past an expired
  entry reads; the others wait for that read (bounded by `read_timeout`) and then use its result.
- One read is one DynamoDB BatchGetItem: the flags of the scopes and their current-window counters (the
  last known totals that local accounting adds its own unreported spend to).
- Store outage: serve the last known flag for up to `max_stale` seconds, then fail open (default: calls
  proceed, logged loudly at ERROR) or closed (calls are refused). An outage is re-tried once per TTL.
  A SHUTDOWN this process has read stays in force, past `max_stale` and in fail-open mode, until a
  newer flag is read.
- A hung read never blocks callers longer than `read_timeout`: it runs on its own daemon thread and, if it
  finishes late, still refreshes the cache.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

from guardrail.core.models import CounterKey, Flag, Level, ScopeTotals

if TYPE_CHECKING:
    pass

logger = logging.getLogger("guardrail.client")

FailMode = Literal["open", "closed"]
Freshness = Literal["fresh", "stale", "fail-open", "fail-closed"]

Keys = tuple[CounterKey, ...]
MAX_CACHED = 256  # distinct scope sets cached (a client has one per metadata combination it calls with)


@dataclass(frozen=True, slots=True)
class ScopeView:
    """What the client knows about one scope: its flag and, when read, its current-window totals.

    `read_at` is the `time.monotonic()` at which the read that produced it started (spend reported after
    that instant cannot be in `totals`)."""

    flag: Flag
    totals: ScopeTotals | None
    read_at: float
    freshness: Freshness = "fresh"
    problem: str = ""


class FlagSource(Protocol):
    """Reads flags and counters in one store call."""

    def read(self, keys: Sequence[CounterKey]) -> tuple[dict[str, Flag], dict[CounterKey, ScopeTotals]]: ...


class _PendingRead:
    def __init__(self) -> None:
        self.done = threading.Event()
        self.views: tuple[ScopeView, ...] | None = None
        self.error: BaseException | None = None


class FlagCache:
    def __init__(
        self,
        source: FlagSource,
        *,
        ttl: float = 1.0,
        max_stale: float = 300.0,
        fail_mode: FailMode = "open",
        read_timeout: float = 1.0,
        timer: Callable[[], float] = time.monotonic,
        on_read: Callable[[Mapping[CounterKey, ScopeTotals], float], None] | None = None,
    ) -> None:
        if fail_mode not in ("open", "closed"):
            raise ValueError(f"fail_mode must be 'open' or 'closed', not {fail_mode!r}")
        self.source = source
        self.ttl = ttl
        self.max_stale = max_stale
        self.fail_mode = fail_mode
        self.read_timeout = read_timeout
        self.timer = timer
        self.on_read = on_read
        # key -> (expires at, views): a plain dict read without the lock on the hot path (a dict lookup and
        # a tuple are atomic; writers replace whole entries under the lock). TTLCache cost a lock and about
        # 2 us per call.
        self._cache: dict[Hashable, tuple[float, tuple[ScopeView, ...]]] = {}
        self.entries = self._cache  # the same dict, read by the guarded client's hot path as views() reads it
        self._known: dict[str, ScopeView] = {}  # last successful read per scope
        self._lock = threading.Lock()  # guards _cache, _known, _pending
        self._read_lock = threading.Lock()  # one reader at a time; the others wait for its result
        self._pending: dict[Hashable, _PendingRead] = {}
        self._last_outage_log = float("-inf")

    def views(self, keys: Keys, cache_key: Hashable = None) -> tuple[ScopeView, ...]:
        """The views of `keys`, in order. `cache_key` (e.g. a string naming `keys`) is cheaper to hash."""
        ck = keys if cache_key is None else cache_key
        hit = self._cache.get(ck)
        if hit is not None and self.timer() < hit[0]:
            return hit[1]
        return self._refresh(keys, ck)

    def _fresh(self, ck: Hashable) -> tuple[ScopeView, ...] | None:
        hit = self._cache.get(ck)
        return hit[1] if hit is not None and self.timer() < hit[0] else None

    def _put(self, ck: Hashable, views: tuple[ScopeView, ...]) -> None:
        """Cache `views` for one TTL from now (under self._lock)."""
        now = self.timer()
        if len(self._cache) >= MAX_CACHED and ck not in self._cache:
            for key in [k for k, (expires, _) in self._cache.items() if expires <= now]:
                del self._cache[key]
            if len(self._cache) >= MAX_CACHED:
                self._cache.clear()
        self._cache[ck] = (now + self.ttl, views)

    def invalidate(self) -> None:
        with self._lock:
            self._cache.clear()

    def put_flag(self, flag: Flag) -> None:
        """A flag this process just learned (e.g. a transition its own ledger write caused)."""
        with self._lock:
            now = self.timer()
            for keys, (expires, views) in list(self._cache.items()):
                if now < expires and any(v.flag.scope == flag.scope and v.flag.version < flag.version for v in views):
                    self._put(keys, tuple(_with_flag(v, flag) if v.flag.scope == flag.scope else v for v in views))
            known = self._known.get(flag.scope)
            if known is not None and known.flag.version < flag.version:
                self._known[flag.scope] = _with_flag(known, flag)

    # -- the slow path: once per TTL -------------------------------------------------------------------

    def _refresh(self, keys: Keys, ck: Hashable) -> tuple[ScopeView, ...]:
        deadline = time.monotonic() + self.read_timeout
        if not self._read_lock.acquire(timeout=self.read_timeout):
            return self._fallback(keys, "another thread's flag read is taking longer than the read timeout")
        try:
            with self._lock:
                cached = self._fresh(ck)  # a thread before us may have read it while we waited
                if cached is not None:
                    return cached
                pending = self._pending.get(ck)
                if pending is None:
                    pending = self._pending[ck] = _PendingRead()
                    start = True
                else:
                    start = False  # an earlier read is still running (hung store): wait for it, no new one
            if start:
                threading.Thread(
                    target=self._read, args=(keys, ck, pending), name="guardrail-flag-read", daemon=True
                ).start()
            if pending.done.wait(max(0.0, deadline - time.monotonic())) and pending.views is not None:
                return pending.views
            problem = (
                f"{type(pending.error).__name__}: {pending.error}"
                if pending.error is not None
                else f"no answer within {self.read_timeout:g} s"
            )
            views = self._fallback(keys, problem)
            with self._lock:
                self._put(ck, views)  # retry the store once per TTL, not on every call
            return views
        finally:
            self._read_lock.release()

    def _read(self, keys: Keys, ck: Hashable, pending: _PendingRead) -> None:
        read_at = self.timer()
        try:
            flags, totals = self.source.read(keys)
            views = tuple(ScopeView(flags[s], totals.get((s, w)), read_at) for s, w in keys)
            with self._lock:
                self._put(ck, views)
                for view in views:
                    self._known[view.flag.scope] = view
            pending.views = views
            if self.on_read is not None:
                self.on_read(totals, read_at)
        except Exception as exc:  # the store is down or refuses us: callers fall back, never crash
            pending.error = exc
        finally:
            with self._lock:
                self._pending.pop(ck, None)
            pending.done.set()

    def _fallback(self, keys: Keys, problem: str) -> tuple[ScopeView, ...]:
        now = self.timer()
        out = []
        with self._lock:  # loud, but once per TTL, not once per waiting thread
            quiet = now - self._last_outage_log < self.ttl
            if not quiet:
                self._last_outage_log = now
        log = logger.debug if quiet else logger.error
        for scope, window in keys:
            with self._lock:
                known = self._known.get(scope)
            age = now - known.read_at if known is not None else None
            if known is not None and known.flag.level == Level.SHUTDOWN:
                # A shutdown this process has seen stays in force until it reads a newer flag: failing
                # open is for a client that never saw one, never a way out of a shutdown.
                log(
                    "guardrail flag store unreachable (%s): %s stays SHUTDOWN (last read %.1f s ago) until a "
                    "newer flag is read",
                    problem,
                    scope,
                    age,
                )
                out.append(ScopeView(known.flag, None, known.read_at, "stale", problem))
            elif known is not None and age is not None and age <= self.max_stale:
                log(
                    "guardrail flag store unreachable (%s): using the last known flag of %s (%s, read %.1f s ago)",
                    problem,
                    scope,
                    known.flag.level.label,
                    age,
                )
                totals = known.totals if known.totals is not None and known.totals.window == window else None
                out.append(ScopeView(known.flag, totals, known.read_at, "stale", problem))
            elif self.fail_mode == "open":
                log(
                    "guardrail flag store unreachable (%s) and no flag of %s newer than %g s: FAILING OPEN, "
                    "Bedrock calls proceed without the guardrail's flags",
                    problem,
                    scope,
                    self.max_stale,
                )
                out.append(ScopeView(Flag(scope=scope), None, now, "fail-open", problem))
            else:
                log(
                    "guardrail flag store unreachable (%s) and no flag of %s newer than %g s: FAILING CLOSED, "
                    "Bedrock calls are refused",
                    problem,
                    scope,
                    self.max_stale,
                )
                closed = Flag(
                    scope=scope,
                    level=Level.SHUTDOWN,
                    trigger="manual",
                    reason=f"the flag store is unreachable ({problem}) and the client fails closed",
                )
                out.append(ScopeView(closed, None, now, "fail-closed", problem))
        return tuple(out)


def _with_flag(view: ScopeView, flag: Flag) -> ScopeView:
    return ScopeView(flag, view.totals, view.read_at, view.freshness, view.problem)
