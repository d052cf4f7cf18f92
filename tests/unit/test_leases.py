"""Budget leases: slice sizing, and the invariants of leasing across processes (in-memory store)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from guardrail.client.leases import LeaseCharge, LeaseRefusal, Leases
from guardrail.core.leases import LeasePolicy, slice_for
from guardrail.core.models import CounterKey
from tests.support.leases import DAY, GLOBAL, MemoryLeaseStore, Ticking

LIMIT = Decimal(25)
POLICY = LeasePolicy(ttl=30, divisor=16, min_slice=Decimal("0.01"), max_slice=Decimal(5), margin=2)
money = st.decimals(min_value=0, max_value=1000, places=6, allow_nan=False, allow_infinity=False)


def holder(store: MemoryLeaseStore, clock: Ticking, policy: LeasePolicy = POLICY, **kwargs: object) -> Leases:
    return Leases(store, policy, clock=clock, item_expires=lambda _: 0, sleep=clock.sleep, **kwargs)  # type: ignore[arg-type]


def admit(leases: Leases, estimate: Decimal, limit: Decimal = LIMIT) -> LeaseCharge | LeaseRefusal:
    return leases.admit((GLOBAL,), ("global|day",), [limit], estimate)


@given(headroom=money, need=money)
def test_a_slice_fits_the_headroom_and_covers_the_need(headroom: Decimal, need: Decimal) -> None:
    got = slice_for(headroom, need, POLICY)
    if got:
        assert need <= got <= headroom
        assert got <= max(POLICY.max_slice, need)
    else:
        assert headroom <= 0 or headroom < need or headroom < Decimal("0.000001")


@given(a=money, b=money)
def test_slices_shrink_as_the_headroom_shrinks(a: Decimal, b: Decimal) -> None:
    low, high = sorted((a, b))
    assert slice_for(low, Decimal(0), POLICY) <= slice_for(high, Decimal(0), POLICY)


def test_the_last_dollars_are_spread_thinly() -> None:
    assert slice_for(Decimal(25), Decimal("0.05"), POLICY) == Decimal("1.5625")
    assert slice_for(Decimal("0.5"), Decimal("0.05"), POLICY) == Decimal("0.05")  # one request, not the rest
    assert slice_for(Decimal("0.04"), Decimal("0.05"), POLICY) == 0


def test_a_policy_that_cannot_work_is_refused_with_its_values() -> None:
    with pytest.raises(ValueError, match="min_slice"):
        LeasePolicy(min_slice=Decimal(0))
    with pytest.raises(ValueError, match="margin"):
        LeasePolicy(ttl=1, margin=1)


ops = st.lists(
    st.one_of(
        st.tuples(st.just("spend"), st.integers(0, 3), st.integers(1, 4), st.sampled_from(["0.05", "0.3", "1.7"])),
        st.tuples(st.just("crash"), st.integers(0, 3), st.just(0), st.just("0")),
        st.tuples(st.just("close"), st.integers(0, 3), st.just(0), st.just("0")),
        st.tuples(st.just("tick"), st.just(0), st.sampled_from([1, 10, 40]), st.just("0")),
    ),
    max_size=60,
)


@given(ops)
def test_reserved_never_exceeds_the_threshold_minus_spend_and_released_slices_return(
    script: list[tuple[str, int, int, str]],
) -> None:
    clock = Ticking()
    store = MemoryLeaseStore()
    holders = [holder(store, clock) for _ in range(4)]
    spent = Decimal(0)
    lost = Decimal(0)  # what crashed holders spent after their last write: the store cannot know it
    for op, who, n, cost_text in script:
        cost = Decimal(cost_text)
        if op == "spend":
            charges = [admit(holders[who], cost) for _ in range(n)]  # n requests in flight at once
            for charge in charges:
                if isinstance(charge, LeaseCharge):
                    holders[who].complete(charge, cost)
                    spent += cost
        elif op == "crash":
            for lease in holders[who]._leases.values():
                if lease.held:
                    lost += lease.synced - lease.unspent
            holders[who] = holder(store, clock)  # abandoned: never closed, its entry expires
        elif op == "close":
            holders[who].close()
        else:
            clock.at += n
        item = store.item(GLOBAL)
        # A live holder idle past its expiry whose entry someone else returned: what it spent since its last
        # write is out of `claimed` until its next grant (or its exit) repays it (docs/leases.md, the bound).
        unpaid = sum(
            (
                lease.synced - lease.unspent
                for h in holders
                for lease in h._leases.values()
                if lease.held and h.holder not in item.holders
            ),
            Decimal(0),
        )
        # Every holder's spend is inside `claimed` (or was lost with a crash, or is unpaid as above), and
        # claimed stays in the limit.
        assert item.claimed <= LIMIT
        assert spent <= item.claimed + lost + unpaid
        assert spent <= LIMIT + lost + unpaid
    for h in holders:
        h.close()
    clock.at += POLICY.ttl + 1
    # A process that finds no headroom returns the slices whose grants expired (here: the crashed ones').
    last = holder(store, clock)
    assert isinstance(admit(last, Decimal(0), limit=store.item(GLOBAL).claimed), (LeaseCharge, LeaseRefusal))
    last.close()
    # Everything unspent came back: what is claimed is what was spent (less what crashes lost).
    assert store.item(GLOBAL).claimed == spent - lost
    assert store.item(GLOBAL).holders == {}


def test_many_processes_stop_at_the_limit_when_costs_match_estimates() -> None:
    clock = Ticking()
    store = MemoryLeaseStore()
    holders = [holder(store, clock) for _ in range(32)]
    spent = Decimal(0)
    refused = 0
    while refused < len(holders):
        refused = 0
        for h in holders:
            charge = admit(h, Decimal("0.05"))
            if isinstance(charge, LeaseCharge):
                h.complete(charge, Decimal("0.05"))
                spent += Decimal("0.05")
            else:
                refused += 1
                assert "budget lease" in charge.reason and charge.scope == "global"
    assert LIMIT - Decimal("0.05") * 32 <= spent <= LIMIT


def test_a_debt_from_a_request_dearer_than_its_estimate_is_paid_by_the_next_grant() -> None:
    clock = Ticking()
    store = MemoryLeaseStore()
    h = holder(store, clock)
    charge = admit(h, Decimal(0))  # first request: no estimate yet
    assert isinstance(charge, LeaseCharge)
    h.complete(charge, Decimal(3))  # more than the first slice ($25 / 16)
    assert h.holding["global|day"] < 0
    charge = admit(h, Decimal(3))
    assert isinstance(charge, LeaseCharge)
    assert store.item(GLOBAL).claimed >= Decimal(3) + Decimal(3)
    h.complete(charge, Decimal(3))
    h.close()
    assert store.item(GLOBAL).claimed == Decimal(6)
    assert DAY.kind == "day"


def test_a_charge_covers_the_scopes_with_a_limit_even_when_the_limits_change_under_the_same_books() -> None:
    clock = Ticking()
    store = MemoryLeaseStore()
    h = holder(store, clock)
    app: CounterKey = ("app:chat", DAY)
    keys, books = (GLOBAL, app), ("global|day", "app:chat|day")
    both = (LIMIT, LIMIT)
    cost = Decimal("0.05")
    charges = [h.admit(keys, books, both, cost) for _ in range(3)]  # the first leases both slices
    assert all(isinstance(c, LeaseCharge) for c in charges)
    assert charges[2] is charges[1]  # the same limits and estimate: the same charge, reused
    for charge in charges:
        h.complete(charge, cost)  # type: ignore[arg-type]
    only_global = h.admit(keys, books, (LIMIT, None), cost)  # the app's budget went away
    assert isinstance(only_global, LeaseCharge) and only_global is not charges[1]
    assert [lease.key for lease in only_global.leases] == [GLOBAL]
    h.complete(only_global, cost)
    assert all(lease.in_flight == 0 for lease in h._leases.values())
    first_slice = Decimal("1.5625")  # $25 / 16
    assert h.holding == {"global|day": first_slice - 4 * cost, "app:chat|day": first_slice - 3 * cost}
    h.close()
    assert store.item(GLOBAL).claimed == 4 * cost and store.item(app).claimed == 3 * cost


def test_leases_can_share_the_local_accounting_lock() -> None:
    from guardrail.client.local_spend import LocalSpend

    spend = LocalSpend()
    h = holder(MemoryLeaseStore(), Ticking(), lock=spend.lock)
    assert h.lock is spend.lock
    charge = admit(h, Decimal("0.05"))  # takes and releases the shared lock: it is free afterwards
    assert isinstance(charge, LeaseCharge)
    with spend.lock:
        h.complete_locked(charge, Decimal("0.05"))
