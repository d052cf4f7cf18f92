"""Local accounting: a process stops itself as soon as it knows a shutdown threshold is (or is about to
be) crossed, without waiting for the flag to move.

Per scope and window the process keeps:
- `known`: the last total it read (flag store read, or the consistent read after its own ledger write),
  and when that read started;
- `unreported`: its own spend that completed but is in no total it has read yet (queued for the
  reporter, or being written);
- `sent`: usage events it put on EventBridge after the last read started (the ingest path has not
  necessarily counted them yet; events sent before the read are assumed counted or about to be);
- `in_flight`: requests it started and that have not finished, each reserved at the recent mean cost of
  its model in this process.

A call is admitted only while known + unreported + sent + in_flight is below the scope's shutdown
threshold (re-armed from the reset baseline, ignored while snoozed), so one process overshoots by less
than one request's cost. Admission and accounting share one lock: no request starts after the process
has seen the crossing. Amounts are kept in integer units of 10^-18 dollars (guardrail.client.units: exact,
cheaper than Decimal on the hot path); the methods taking or giving dollars say so and take Decimal.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, NamedTuple

from guardrail.client.units import limits_in_units, to_decimal, to_units
from guardrail.client.yielding_lock import YieldingLock
from guardrail.core.models import CounterKey, ScopeTotals

if TYPE_CHECKING:
    from guardrail.client.leases import LeaseCharge

EWMA_SHIFT = 2  # a model's estimate moves a quarter of the way to each new cost


@dataclass(slots=True)
class _Book:
    """One scope-window's amounts, in units."""

    known: int = 0
    known_read_at: float = float("-inf")
    unreported: int = 0
    sent: deque[tuple[float, int]] = field(default_factory=deque)
    sent_total: int = 0
    in_flight: int = 0
    crossed_at: float | None = None  # when this process first knew spend >= limit (monotonic)

    def spend(self) -> int:
        """What this process knows has been spent (excluding in-flight estimates)."""
        return self.known + self.unreported + self.sent_total

    def trim_sent(self) -> None:
        while self.sent and self.sent[0][0] < self.known_read_at:
            _, cost = self.sent.popleft()
            self.sent_total -= cost


def book_id(key: CounterKey) -> str:
    """A scope-window's book name: a string, cheap to hash on the hot path."""
    return f"{key[0]}|{key[1].key}"


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why local accounting refused a call (dollars)."""

    book: str
    limit: Decimal
    known: Decimal
    unreported: Decimal
    in_flight: Decimal

    @property
    def scope(self) -> str:
        return self.book.partition("|")[0]

    @property
    def reason(self) -> str:
        text = (
            f"this process's own accounting reached the shutdown threshold: last known spend ${self.known}"
            f" + its unreported spend ${self.unreported}"
        )
        if self.in_flight:
            text += f" + its requests in flight ~${self.in_flight.quantize(Decimal('0.000001'))}"
        return text + f" >= ${self.limit} (the flag follows once the ledger has counted it)"


class Ticket(NamedTuple):
    """An admitted call: what it reserved (units), released when it finishes, and what it took from the
    budget leases (which share this lock: settling a ticket settles both). A tuple: built with
    `tuple.__new__`, without a Python call."""

    books: tuple[_Book, ...]
    names: tuple[str, ...]  # the books' names, as admitted
    model_id: str
    reserved: int
    lease: LeaseCharge | None = None


_new_tuple = tuple.__new__


Costs = Iterable[tuple[Sequence[str], int]]  # (books, cost in units) per report


class LocalSpend:
    """Books are named by `book_id((scope, window))`."""

    def __init__(self, *, reserve_in_flight: bool = True, clock: Callable[[], float] = time.monotonic) -> None:
        self.reserve_in_flight = reserve_in_flight
        self.clock = clock
        self._books: dict[str, _Book] = {}
        self._resolved: dict[tuple[str, ...], tuple[_Book, ...]] = {}
        # Per model: the recent mean cost of a request, in units. Read without the lock (one dict read: a
        # call reserves what it finds), written under it.
        self.estimates: dict[str, int] = {}
        # Many calling threads take it twice per call (see yielding_lock); budget leases share it (one lock
        # per admission and per settlement, not two).
        self.lock = self._lock = YieldingLock()
        self.admitted_after_crossing = 0  # must stay 0: the guarantee the overshoot benchmark checks

    def _book(self, name: str) -> _Book:
        book = self._books.get(name)
        if book is None:
            book = self._books[name] = _Book()
        return book

    def resolve(self, names: tuple[str, ...]) -> tuple[_Book, ...]:
        """The books of `names` (made when new), for a caller that holds `lock`."""
        found = self._resolved.get(names)
        if found is None:
            found = self._resolved[names] = tuple(self._book(name) for name in names)
        return found

    def admit(self, books: tuple[str, ...], limits: Sequence[Decimal | None], model_id: str) -> Ticket | Refusal:
        """Reserve a call against every scope (limits in dollars), or say which scope refuses it."""
        units = limits_in_units(tuple(limits))
        with self._lock:
            return self.admit_locked(books, units, model_id)

    def admit_locked(self, books: tuple[str, ...], limits: Sequence[int | None], model_id: str) -> Ticket | Refusal:
        """`admit` with limits in units, for a caller that holds `lock`."""
        found = self._resolved.get(books) or self.resolve(books)
        crossed = False
        for book, limit in zip(found, limits):  # noqa: B905 (one limit per book)
            if limit is not None:
                spent = book.known + book.unreported + book.sent_total
                if spent + book.in_flight >= limit:
                    return self._refusal(books, found, book, limit, spent)
                if book.crossed_at is not None:
                    crossed = True
        estimate = self.estimates.get(model_id, 0) if self.reserve_in_flight else 0
        if estimate:
            for book in found:
                book.in_flight += estimate
        if crossed:
            self.admitted_after_crossing += 1
        return _new_tuple(Ticket, (found, books, model_id, estimate, None))

    def _refusal(
        self, names: tuple[str, ...], found: tuple[_Book, ...], book: _Book, limit: int, spent: int
    ) -> Refusal:
        name = next(n for n, b in zip(names, found, strict=True) if b is book)
        if spent >= limit and book.crossed_at is None:
            book.crossed_at = self.clock()
        unreported = book.unreported + book.sent_total
        return Refusal(
            name, to_decimal(limit), to_decimal(book.known), to_decimal(unreported), to_decimal(book.in_flight)
        )

    def release(self, ticket: Ticket) -> None:
        """The call failed before Bedrock charged anything (e.g. ThrottlingException)."""
        charge = ticket.lease
        if ticket.reserved or charge is not None:
            with self._lock:
                for book in ticket.books:
                    book.in_flight -= ticket.reserved
                if charge is not None:
                    charge.release()

    def complete(
        self,
        ticket: Ticket,
        cost: Decimal,
        books: Sequence[str],
        limits: Sequence[Decimal | None] = (),
        *,
        learn: bool = True,
    ) -> None:
        """The call finished and cost `cost` dollars (counted in `books`, the windows at completion time)."""
        units, unit_limits = to_units(cost), limits_in_units(tuple(limits))
        with self._lock:
            self.complete_locked(ticket, units, books, unit_limits, learn=learn)

    def complete_locked(
        self,
        ticket: Ticket,
        cost: int,
        books: Sequence[str],
        limits: Sequence[int | None] = (),
        *,
        learn: bool = True,
    ) -> None:
        """`complete` with the cost and limits in units, for a caller that holds `lock`; the ticket's lease
        charge is settled too."""
        reserved = ticket.reserved
        if reserved:
            for book in ticket.books:
                book.in_flight -= reserved
        # The ticket's books, unless a window ended while the call ran.
        found = ticket.books if books is ticket.names else self.resolve(tuple(books))
        if len(limits) != len(found):
            limits = (*limits, *(None,) * len(found))
        for book, limit in zip(found, limits):  # noqa: B905 (limits may be longer: padded)
            book.unreported += cost
            if (
                limit is not None
                and book.crossed_at is None
                and book.known + book.unreported + book.sent_total >= limit
            ):
                book.crossed_at = self.clock()
        charge = ticket.lease
        if charge is not None:
            charge.settle(cost)
        if learn:
            model_id = ticket.model_id
            old = self.estimates.get(model_id)
            if old != cost:
                # Rounded up (a unit at most): an estimate never falls short of a run of equal costs.
                self.estimates[model_id] = cost if old is None else old - ((old - cost) >> EWMA_SHIFT)

    def sent(self, costs: Costs, sent_at: float) -> None:
        """Usage events accepted by EventBridge at `sent_at` (not yet necessarily counted)."""
        # Summed per set of books first (a PutEvents carries hundreds of reports, mostly of the same books):
        # the same totals, with the lock held and a book touched once per set instead of once per report.
        by_books: dict[Sequence[str], int] = {}
        for books, cost in costs:
            by_books[books] = by_books.get(books, 0) + cost
        with self._lock:
            for books, cost in by_books.items():
                for name in books:
                    book = self._book(name)
                    book.unreported -= cost
                    if sent_at >= book.known_read_at:
                        book.sent.append((sent_at, cost))
                        book.sent_total += cost

    def dropped(self, costs: Costs) -> None:
        """Records the reporter gave up on (the invocation log still counts them)."""
        with self._lock:
            for books, cost in costs:
                for name in books:
                    self._book(name).unreported -= cost

    def written(self, costs: Costs, totals: Mapping[CounterKey, ScopeTotals], read_at: float) -> None:
        """Records written to the ledger directly; `totals` is the consistent read after the write."""
        with self._lock:
            for books, cost in costs:
                for name in books:
                    self._book(name).unreported -= cost
            self._observe(totals, read_at)

    def observe(self, totals: Mapping[CounterKey, ScopeTotals], read_at: float) -> None:
        """Totals read from the store by a read that started at `read_at`."""
        with self._lock:
            self._observe(totals, read_at)

    def _observe(self, totals: Mapping[CounterKey, ScopeTotals], read_at: float) -> None:
        for key, scope_totals in totals.items():
            book = self._book(book_id(key))
            if read_at >= book.known_read_at:
                book.known = to_units(scope_totals.spend)
                book.known_read_at = read_at
                book.trim_sent()

    def spend(self, key: CounterKey) -> Decimal:
        """What this process knows has been spent in a scope-window, in dollars."""
        with self._lock:
            return to_decimal(self._book(book_id(key)).spend())

    def crossed_at(self, key: CounterKey) -> float | None:
        with self._lock:
            book = self._books.get(book_id(key))
            return None if book is None else book.crossed_at
