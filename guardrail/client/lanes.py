"""The fast lane of `GuardedBedrockClient.converse` and `invoke_model`: what a call with the client's own
metadata needs, resolved once per flag snapshot instead of once per call.

The general path (`_admit`, `_complete`) finds a call's scope set, windows and flags, asks local accounting
(`LocalSpend.admit_locked`) and the budget leases (`Leases.take_locked`) in turn, and settles both
(`LocalSpend.complete_locked`). The fast lane does the same for the common call, inline (`_lane_call`): for
every scope with a shutdown limit, known + unreported + sent + in flight is below the limit and no crossing
was seen, and (leases on) a valid slice's free part covers the estimate; then the call is reserved in both,
and settled in both, in one loop each under the accounting lock. Anything else (a refusal and its reason,
a slice to lease, a throttle, a snooze, requestMetadata, a window that ended, usage that is not standard)
takes the general path. tests/unit/test_fast_lane.py runs the same calls through both and compares every
amount.

Why: at 8 calling threads, every Python call and every object a guarded call touches right after a Bedrock
call costs several times its warm price (the Bedrock call evicted the guard's code and data), and a
thread switched out while holding the lock stalls the others. The general path's five functions over
four objects per call became one function (benchmarks/bench_client_overhead.py, issue 16).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from guardrail.client.admission import Verdict, Windows
    from guardrail.client.leases import Leases, _Lease
    from guardrail.client.local_spend import LocalSpend, _Book


NO_ENTRY = (float("-inf"), ())  # a lane's flag entry when the flags were not cached: never the current one


class Lane:
    """The default scope set's books and leases for one window and flag snapshot. `fast`: whether calls
    may take it at all (nothing to refuse or downgrade, no snooze)."""

    __slots__ = ("books", "cache_key", "checks", "entry", "fast", "leases", "limits", "names", "settle", "valid_until")

    def __init__(
        self,
        spend: LocalSpend,
        leases: Leases | None,
        windows: Windows,
        verdict: Verdict,
        entry: Any,
        *,
        fast: bool,
    ) -> None:
        """For a caller that holds the accounting lock (`leases`, when given, share it)."""
        self.entry = entry  # the flag cache entry the verdict was made from: the lane lasts while it does
        self.cache_key = windows.cache_key
        self.valid_until = windows.valid_until  # the first end of a window: the books change then
        self.fast = fast
        self.names = windows.books
        self.limits = verdict.limits
        # (Resolved only for a lane calls take: a refused call makes no books or leases on the general path.)
        self.books: tuple[_Book, ...] = spend.resolve(windows.books) if fast else ()
        held: tuple[_Lease | None, ...] = (None,) * len(self.books)
        if leases is not None and fast:
            held = leases.resolve(windows.keys, windows.books)
        # Admission: each scope with a shutdown limit, its lease (None with leases off) and the limit (units).
        self.checks: tuple[tuple[_Book, _Lease | None, int], ...] = tuple(
            (book, lease, limit)
            for book, lease, limit in zip(self.books, held, verdict.limits, strict=False)  # (all empty or all full)
            if limit is not None
        )
        # The leases a call spends from: those of the scopes with a limit (what Leases.take_locked charges).
        self.leases: tuple[_Lease, ...] = tuple(lease for _, lease, _ in self.checks if lease is not None)
        # Settlement: every book and its limit (None: no crossing to note).
        self.settle: tuple[tuple[_Book, int | None], ...] = tuple(zip(self.books, verdict.limits, strict=False))


def closed_lane() -> Lane:
    """A lane no call takes (before the first call): the first call builds the real one."""
    lane = Lane.__new__(Lane)
    lane.entry, lane.cache_key, lane.valid_until, lane.fast = NO_ENTRY, "", float("-inf"), False
    lane.names, lane.limits, lane.books, lane.checks, lane.leases, lane.settle = (), (), (), (), (), ()
    return lane
