"""A lock for the guarded client's hot path, shared by many calling threads under the GIL.

With `threading.Lock`, a thread that the interpreter switches out while it holds the lock makes every
other caller block on the lock in the kernel; from then on each hand-over of the lock costs two context
switches (the new holder needs the GIL, the old one the lock), and the convoy lasts as long as threads
keep calling: at 8 threads it doubled a guarded call's CPU (`benchmarks/bench_client_overhead.py`).
This lock never sleeps in the kernel while the holder may simply be waiting for the GIL: a caller that
finds it held yields the GIL (`time.sleep(0)`) so that the holder can run its few microseconds and let go,
and only blocks after many tries (a holder that is really busy).
"""

from __future__ import annotations

import threading
import time
from types import TracebackType

YIELDS_BEFORE_BLOCKING = 100


class YieldingLock:
    """`with lock:`; or, on the guarded call's hot path without the two Python calls a `with` costs:
    `if not lock.raw.acquire(False): lock.acquire_contended()`, then `lock.raw.release()`."""

    __slots__ = ("_lock", "raw")

    def __init__(self) -> None:
        self._lock = self.raw = threading.Lock()

    def __enter__(self) -> None:
        if not self._lock.acquire(False):
            self.acquire_contended()

    def acquire_contended(self) -> None:
        """Acquire a lock that was held a moment ago: yield the GIL to its holder first."""
        lock = self._lock
        for _ in range(YIELDS_BEFORE_BLOCKING):
            time.sleep(0)  # releases the GIL: the holder (or another caller) runs
            if lock.acquire(False):
                return
        lock.acquire()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._lock.release()
