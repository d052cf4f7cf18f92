"""Budget leases on the client: a process spends only from slices of a scope's headroom that it leased
from the shared lease item, so all processes together stop at the shutdown limit (docs/leases.md).

Per scope and window (a book) the process keeps its lease: `unspent` (granted and not yet spent;
negative when requests cost more than they reserved: a debt the next grant pays), `in_flight` (the
estimated cost of its admitted, unfinished requests), what its entry in the store says (`synced`), and
until when it may spend (`valid_until`: the grant's expiry minus a margin for clock skew).

A call is admitted when, in every scope with a shutdown limit, unspent - in_flight covers the request's
estimated cost (or is positive while no estimate is known). Otherwise one thread of the process asks for
a slice (one conditional UpdateItem); if the headroom is gone it first returns the slices of holders whose
grants expired (crashed processes), then refuses the call, or waits up to `wait` seconds for returned
slices. Store errors: the client's fail mode decides (open: admit without a lease for a second, logged at
ERROR; closed: refuse).

Amounts held per lease are integer units of 10^-18 dollars (guardrail.client.units), as in local
accounting; the store and the methods named for dollars (`admit`, `complete`, `holding`) speak Decimal.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal, Protocol

from guardrail.client.units import limits_in_units, to_decimal, to_units
from guardrail.client.yielding_lock import YieldingLock
from guardrail.core.leases import LeasePolicy, slice_for
from guardrail.core.models import CounterKey
from guardrail.store.leases import LeaseItem

logger = logging.getLogger("guardrail.client")

ZERO = Decimal(0)
STORE_RETRY_SECONDS = 1.0  # after a store error, the fail mode applies this long before the next attempt
MAX_ATTEMPTS = 8  # conditional updates per acquisition (each failure returns the item it saw)


class LeaseStore(Protocol):
    calls: int

    def grant(
        self,
        key: CounterKey,
        holder: str,
        add: Decimal,
        *,
        limit: Decimal,
        held: bool,
        unspent: Decimal,
        expires: float,
        item_expires: int,
    ) -> tuple[bool, LeaseItem]: ...

    def release(self, key: CounterKey, holder: str, returned: Decimal) -> bool: ...

    def repay(self, key: CounterKey, amount: Decimal) -> None: ...

    def reclaim(self, key: CounterKey, holder: str, unspent: Decimal, expires: float) -> bool: ...


@dataclass(frozen=True, slots=True)
class LeaseRefusal:
    scope: str
    reason: str


@dataclass(slots=True)
class _Lease:
    key: CounterKey
    item_expires: int
    unspent_units: int = 0
    in_flight_units: int = 0
    synced_units: int = 0
    held: bool = False
    valid_until: float = float("-inf")
    claimed: Decimal = ZERO  # the item's claimed at this process's last call
    down_until: float = float("-inf")

    # In dollars (for tests and logs): the hot path reads and writes the units.
    @property
    def unspent(self) -> Decimal:
        return to_decimal(self.unspent_units)

    @property
    def in_flight(self) -> Decimal:
        return to_decimal(self.in_flight_units)

    @property
    def synced(self) -> Decimal:
        return to_decimal(self.synced_units)


class LeaseCharge:
    """What an admitted call took from the leases of its scopes (`estimate` in units)."""

    __slots__ = ("estimate", "leases")

    def __init__(self, leases: tuple[_Lease, ...], estimate: int) -> None:
        self.leases = leases
        self.estimate = estimate

    def settle(self, cost: int) -> None:
        """The call finished and cost `cost` units. The caller holds the leases' lock."""
        estimate = self.estimate
        for lease in self.leases:
            lease.in_flight_units -= estimate
            lease.unspent_units -= cost

    def release(self) -> None:
        """The call cost nothing (it failed before Bedrock charged). The caller holds the leases' lock."""
        estimate = self.estimate
        for lease in self.leases:
            lease.in_flight_units -= estimate


class Leases:
    """One holder (this process's client) of leases in every scope it spends in. Thread-safe."""

    def __init__(
        self,
        store: LeaseStore,
        policy: LeasePolicy,
        *,
        clock: Callable[[], float],
        item_expires: Callable[[CounterKey], int],
        wait: float = 0.0,
        fail_mode: Literal["open", "closed"] = "open",
        sleep: Callable[[float], None] = time.sleep,
        holder: str | None = None,
        lock: YieldingLock | None = None,
    ) -> None:
        """`lock`: the client's local accounting lock, so that a call takes one lock for both."""
        self.store = store
        self.policy = policy
        self.clock = clock
        self.item_expires = item_expires
        self.wait = wait
        self.fail_mode = fail_mode
        self.sleep = sleep
        self.holder = holder or uuid.uuid4().hex[:16]
        self._leases: dict[str, _Lease] = {}
        self._resolved: dict[tuple[str, ...], tuple[_Lease, ...]] = {}
        self.lock = self._lock = lock or YieldingLock()  # taken twice per call by every calling thread
        # The last charge per set of books (with the limits it was taken under), reused while they hold.
        self._charges: dict[tuple[str, ...], tuple[Sequence[int | None], LeaseCharge]] = {}
        self._acquiring = threading.Lock()
        self._logged_at = float("-inf")

    # -- the hot path ---------------------------------------------------------------------------

    def admit(
        self,
        keys: Sequence[CounterKey],
        books: tuple[str, ...],
        limits: Sequence[Decimal | None],
        estimate: Decimal,
    ) -> LeaseCharge | LeaseRefusal:
        """Take `estimate` dollars from the lease of every scope with a limit (dollars), leasing more where
        needed."""
        return self.admit_units(keys, books, limits_in_units(tuple(limits)), to_units(estimate))

    def admit_units(
        self,
        keys: Sequence[CounterKey],
        books: tuple[str, ...],
        limits: Sequence[int | None],
        estimate: int,
    ) -> LeaseCharge | LeaseRefusal:
        """`admit` with the limits and the estimate in units."""
        now = self.clock()
        with self._lock:  # the common case: every slice is valid and covers the request
            charge = self.take_locked(keys, books, limits, estimate, now)
        return charge if charge is not None else self._admit_slowly(keys, books, limits, estimate)

    def take_locked(
        self,
        keys: Sequence[CounterKey],
        books: tuple[str, ...],
        limits: Sequence[int | None],
        estimate: int,
        now: float,
    ) -> LeaseCharge | None:
        """The hot path of `admit` (units), for a caller that holds `lock`: None when a slice must be leased
        first."""
        leases = self._resolved.get(books) or self.resolve(keys, books)
        every = True
        need = estimate or 1  # (integers) what is left covers the estimate, and is positive
        for lease, limit in zip(leases, limits):  # noqa: B905 (same length: one per scope)
            if limit is None:
                every = False
            elif now >= lease.valid_until or lease.unspent_units - lease.in_flight_units < need:
                return None
        cached = self._charges.get(books)  # the same limits and estimate as the last call: the same charge
        if cached is not None and cached[1].estimate == estimate and (cached[0] is limits or cached[0] == limits):
            charge = cached[1]
        else:
            taken = leases if every else tuple(x for x, limit in zip(leases, limits) if limit is not None)  # noqa: B905
            charge = LeaseCharge(taken, estimate)
            self._charges[books] = (limits, charge)
        for lease in charge.leases:
            lease.in_flight_units += estimate
        return charge

    def resolve(self, keys: Sequence[CounterKey], books: tuple[str, ...]) -> tuple[_Lease, ...]:
        """The leases of `books` (made when new), for a caller that holds `lock`. After `close` they are expired
        (returned to the store) and new ones are made."""
        leases = self._resolved.get(books)
        if leases is None:
            leases = self._resolved[books] = tuple(self._lease(k, b) for k, b in zip(keys, books, strict=True))
        return leases

    def _lease(self, key: CounterKey, book: str) -> _Lease:
        lease = self._leases.get(book)
        if lease is None:
            lease = self._leases[book] = _Lease(key, self.item_expires(key))
        return lease

    def _admit_slowly(
        self,
        keys: Sequence[CounterKey],
        books: Sequence[str],
        limits: Sequence[int | None],
        estimate: int,
    ) -> LeaseCharge | LeaseRefusal:
        for _ in range(MAX_ATTEMPTS):
            now = self.clock()
            short: tuple[_Lease, int] | None = None
            with self._lock:
                taken = []
                for i, limit in enumerate(limits):
                    if limit is None:
                        continue
                    lease = self._lease(keys[i], books[i])
                    available = lease.unspent_units - lease.in_flight_units
                    if now < lease.valid_until and available > 0 and available >= estimate:
                        taken.append(lease)
                    elif now < lease.down_until:
                        if self.fail_mode == "closed":
                            return self._unreachable(lease)
                        # fail open: this scope admits without a lease until the store is tried again
                    else:
                        short = (lease, limit)
                        break
                if short is None:
                    for lease in taken:
                        lease.in_flight_units += estimate
                    return LeaseCharge(tuple(taken), estimate)
            refusal = self._acquire(short[0], short[1], estimate)
            if refusal is not None:
                return refusal
        return LeaseRefusal(short[0].key[0] if short else "-", "budget lease: no slice after repeated attempts")

    def complete(self, charge: LeaseCharge, cost: Decimal) -> None:
        """The call finished and cost `cost` dollars."""
        units = to_units(cost)
        with self._lock:
            self.settle_locked(charge, units)

    def complete_locked(self, charge: LeaseCharge, cost: Decimal) -> None:
        """`complete`, for a caller that holds `lock`."""
        self.settle_locked(charge, to_units(cost))

    def settle_locked(self, charge: LeaseCharge, cost: int) -> None:
        """`complete` with the cost in units, for a caller that holds `lock`."""
        charge.settle(cost)

    def release(self, charge: LeaseCharge) -> None:
        """The call cost nothing (it failed before Bedrock charged)."""
        with self._lock:
            charge.release()

    # -- leasing --------------------------------------------------------------------------------

    def _acquire(self, lease: _Lease, limit: int, estimate: int) -> LeaseRefusal | None:
        """Lease enough for one more request (None), or say why not. One thread at a time per process."""
        with self._acquiring:
            deadline = self.clock() + self.wait
            pause = 0.05
            while True:
                try:
                    outcome = self._try_acquire(lease, limit, estimate)
                except Exception as exc:  # the store is unreachable or refuses: the fail mode decides
                    return self._store_failed(lease, exc)
                if outcome is None:
                    return None
                now = self.clock()
                if now >= deadline:
                    return outcome
                self.sleep(min(pause, deadline - now))
                pause = min(pause * 2, 1.0)

    def _try_acquire(self, lease: _Lease, limit_units: int, estimate: int) -> LeaseRefusal | None:
        """(Limit and estimate in units; the store and the slice policy speak dollars.)"""
        limit = to_decimal(limit_units)
        seen: LeaseItem | None = None
        for _ in range(MAX_ATTEMPTS):
            now = self.clock()
            with self._lock:
                available = lease.unspent_units - lease.in_flight_units
                if now < lease.valid_until and available > 0 and available >= estimate:
                    return None  # another thread of this process leased meanwhile
                unspent, held = lease.unspent_units, lease.held
                need = to_decimal(max(0, estimate - available))
            add = slice_for(limit - lease.claimed, need, self.policy)
            if add == 0 and need == 0 and held:
                pass  # what this process holds covers the request: only renew its expiry
            elif add == 0:
                if seen is not None:
                    if self._reclaim_expired(lease, seen, now):
                        seen = None
                        continue
                    return self._exhausted(lease, limit, estimate)
                add = max(need, self.policy.min_slice)  # learn the item (ALL_OLD) if this fails
            expires = now + self.policy.ttl
            added = to_units(add)
            ok, item = self.store.grant(
                lease.key,
                self.holder,
                add,
                limit=limit,
                held=held,
                unspent=to_decimal(unspent + added),
                expires=expires,
                item_expires=lease.item_expires,
            )
            with self._lock:
                lease.claimed = item.claimed
                if ok:
                    lease.unspent_units += added
                    lease.synced_units = unspent + added
                    lease.held = True
                    lease.valid_until = expires - self.policy.margin
                    return None
                seen = item
                entry = item.holders.get(self.holder)
                if held and entry is None:
                    # Our expired entry was returned in full by someone else; what we spent since our last
                    # write is a debt that the next grant pays.
                    lease.unspent_units -= lease.synced_units
                    lease.synced_units = 0
                    lease.held = False
                elif not held and entry is not None:  # a grant whose answer we lost did land: adopt it
                    lease.unspent_units = lease.synced_units = to_units(entry[0])
                    lease.held = True
        return self._exhausted(lease, limit, estimate)

    def _reclaim_expired(self, lease: _Lease, item: LeaseItem, now: float) -> bool:
        """Return the slices of holders whose grants expired (a process that died holding one)."""
        returned = False
        for holder, (unspent, expires) in item.holders.items():
            if holder != self.holder and expires < now and self.store.reclaim(lease.key, holder, unspent, expires):
                logger.warning(
                    "guardrail: returned an expired budget lease of $%s in %s (its holder stopped renewing)",
                    unspent,
                    lease.key[0],
                )
                with self._lock:
                    lease.claimed -= unspent
                returned = True
        return returned

    def _exhausted(self, lease: _Lease, limit: Decimal, estimate_units: int) -> LeaseRefusal:
        estimate = to_decimal(estimate_units)
        headroom = max(ZERO, limit - lease.claimed)
        text = (
            f"budget lease: ${headroom} of the ${limit} shutdown limit is left unleased across all processes"
            f" (the rest is spent or held by processes spending it)"
        )
        if estimate:
            text += f", less than one request (~${estimate.quantize(Decimal('0.000001'))})"
        return LeaseRefusal(lease.key[0], text)

    def _unreachable(self, lease: _Lease) -> LeaseRefusal:
        return LeaseRefusal(
            lease.key[0],
            "budget lease: the lease store is unreachable and the client fails closed (fail_mode='closed')",
        )

    def _store_failed(self, lease: _Lease, exc: Exception) -> LeaseRefusal | None:
        now = self.clock()
        with self._lock:
            lease.down_until = now + STORE_RETRY_SECONDS
        if now - self._logged_at >= STORE_RETRY_SECONDS:
            self._logged_at = now
            logger.error(
                "guardrail: budget lease store unreachable for %s (%s); failing %s",
                lease.key[0],
                type(exc).__name__,
                self.fail_mode,
            )
        return self._unreachable(lease) if self.fail_mode == "closed" else None

    # -- the end --------------------------------------------------------------------------------

    def close(self) -> None:
        """Return every unspent slice (at exit, or when the client is closed). Safe to call twice."""
        with self._acquiring:
            with self._lock:
                leases = list(self._leases.values())
                self._leases.clear()
                self._resolved.clear()
                self._charges.clear()
                for lease in leases:  # returned: whoever still holds one (a client's lane) may not spend from it
                    lease.valid_until = float("-inf")
            for lease in leases:
                try:
                    self._return(lease)
                except Exception as exc:  # at exit: log and go on; the slice returns at its expiry
                    logger.warning(
                        "guardrail: could not return the budget lease of %s (%s); it returns when it expires",
                        lease.key[0],
                        type(exc).__name__,
                    )

    def _return(self, lease: _Lease) -> None:
        if lease.held:
            if self.store.release(lease.key, self.holder, to_decimal(lease.unspent_units)):
                return
            debt = lease.synced_units - lease.unspent_units  # returned in full by someone else after it expired
        else:
            debt = -lease.unspent_units
        if debt > 0:
            self.store.repay(lease.key, to_decimal(debt))

    @property
    def holding(self) -> dict[str, Decimal]:
        """Unspent dollars leased per book (for tests and the benchmark)."""
        with self._lock:
            return {book: to_decimal(lease.unspent_units) for book, lease in self._leases.items()}
