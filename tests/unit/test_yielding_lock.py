"""The guarded client's accounting lock: mutual exclusion for many threads, released on errors, and a
waiter still gets it when the holder keeps it longer than its yields last (it then blocks)."""

from __future__ import annotations

import threading
import time

import pytest

from guardrail.client.yielding_lock import YieldingLock


def test_many_threads_never_overlap_inside_the_lock() -> None:
    lock = YieldingLock()
    inside: list[int] = []
    overlaps: list[int] = []
    total = [0]

    def work() -> None:
        for _ in range(2_000):
            with lock:
                inside.append(1)
                if len(inside) > 1:
                    overlaps.append(len(inside))
                value = total[0]
                time.sleep(0)  # give the other threads every chance to barge in
                total[0] = value + 1
                inside.pop()

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert overlaps == [] and total[0] == 16_000


def test_an_error_inside_releases_the_lock() -> None:
    lock = YieldingLock()
    with pytest.raises(ValueError), lock:
        raise ValueError("boom")
    with lock:  # not held any more
        pass


def test_a_waiter_blocks_until_a_slow_holder_lets_go() -> None:
    lock = YieldingLock()
    got = threading.Event()
    with lock:
        waiter = threading.Thread(target=lambda: (lock.__enter__(), got.set(), lock.__exit__(None, None, None)))
        waiter.start()
        time.sleep(0.05)  # longer than its yields take: it is now blocked on the lock itself
        assert not got.is_set()
    waiter.join(30)
    assert got.is_set()
