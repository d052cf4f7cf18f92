"""Budget lease helpers: an in-memory lease store with the DynamoDB store's semantics, a settable clock,
and a window key."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from decimal import Decimal

from guardrail.core.models import CounterKey, WindowRef
from guardrail.store.leases import LeaseItem

DAY = WindowRef("day", datetime(2026, 11, 22, tzinfo=UTC), datetime(2026, 11, 23, tzinfo=UTC))
GLOBAL: CounterKey = ("global", DAY)


class Ticking:
    """An epoch clock the test moves (and a sleep that moves it)."""

    def __init__(self, at: float = 1_795_000_000.0) -> None:
        self.at = at

    def __call__(self) -> float:
        return self.at

    def sleep(self, seconds: float) -> None:
        self.at += seconds


class MemoryLeaseStore:
    """Lease items in memory: the conditions and updates of guardrail.store.leases.DynamoLeaseStore."""

    def __init__(self) -> None:
        self.items: dict[CounterKey, tuple[Decimal, dict[str, tuple[Decimal, float]]]] = {}
        self.calls = 0
        self._lock = threading.Lock()

    def item(self, key: CounterKey) -> LeaseItem:
        claimed, holders = self.items.get(key, (Decimal(0), {}))
        return LeaseItem(claimed, dict(holders))

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
    ) -> tuple[bool, LeaseItem]:
        with self._lock:
            self.calls += 1
            claimed, holders = self.items.get(key, (Decimal(0), {}))
            if (key in self.items and claimed > limit - add) or (holder in holders) != held:
                return False, self.item(key)
            holders = {**holders, holder: (unspent, round(expires, 3))}
            self.items[key] = (claimed + add, holders)
            return True, self.item(key)

    def release(self, key: CounterKey, holder: str, returned: Decimal) -> bool:
        with self._lock:
            self.calls += 1
            claimed, holders = self.items.get(key, (Decimal(0), {}))
            if holder not in holders:
                return False
            self.items[key] = (claimed - returned, {h: e for h, e in holders.items() if h != holder})
            return True

    def repay(self, key: CounterKey, amount: Decimal) -> None:
        with self._lock:
            self.calls += 1
            claimed, holders = self.items.get(key, (Decimal(0), {}))
            self.items[key] = (claimed + amount, holders)

    def reclaim(self, key: CounterKey, holder: str, unspent: Decimal, expires: float) -> bool:
        with self._lock:
            self.calls += 1
            claimed, holders = self.items.get(key, (Decimal(0), {}))
            if holders.get(holder) != (unspent, round(expires, 3)):
                return False
            self.items[key] = (claimed - unspent, {h: e for h, e in holders.items() if h != holder})
            return True
