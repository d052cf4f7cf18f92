"""Budget leases (pure): how big a slice of a scope's remaining headroom one process may lease.

Every process spending in a scope leases slices of the headroom to the scope's shutdown limit from one
shared lease item (guardrail/store/leases.py), spends locally against them, and returns what it did not
use. The lease item's `claimed` is every slice granted minus every dollar returned, so the guarded spend
of all processes together stays within `claimed <= limit` (docs/leases.md states the bound).

Slices shrink with the headroom, so the last dollars are spread thinly over the processes that still
spend: `headroom / divisor`, at least one request's estimated cost and `min_slice`, at most `max_slice`
and never more than the headroom itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal

ZERO = Decimal(0)
CENT_FRACTION = Decimal("0.000001")  # slices are whole micro-dollars: DynamoDB numbers stay short


@dataclass(frozen=True, slots=True)
class LeasePolicy:
    """ttl: seconds a grant is valid (a crashed process's slice returns after it).
    divisor: a slice is the headroom divided by this (about 2 x the processes expected to share a scope).
    min_slice / max_slice: bounds of one slice in dollars.
    margin: seconds before its expiry a holder stops spending from a slice (clock skew between hosts)."""

    ttl: float = 30.0
    divisor: int = 16
    min_slice: Decimal = Decimal("0.01")
    max_slice: Decimal = Decimal(5)
    margin: float = 2.0

    def __post_init__(self) -> None:
        if self.ttl <= 0 or self.divisor < 1 or self.min_slice <= 0 or self.max_slice < self.min_slice:
            raise ValueError(
                "lease policy needs ttl > 0, divisor >= 1 and 0 < min_slice <= max_slice "
                f"(got ttl={self.ttl}, divisor={self.divisor}, min_slice={self.min_slice}, max_slice={self.max_slice})"
            )
        if not 0 <= self.margin < self.ttl:
            raise ValueError(f"lease margin must be in [0, ttl) (got {self.margin} with ttl {self.ttl})")


def slice_for(headroom: Decimal, need: Decimal, policy: LeasePolicy) -> Decimal:
    """The slice to ask for when `headroom` is left to the limit and this process needs at least `need`
    (its next request's estimated cost, plus any debt). 0: nothing can be granted."""
    if headroom <= 0 or headroom < need:
        return ZERO
    want = max(headroom / policy.divisor, policy.min_slice, need)
    want = min(want, max(policy.max_slice, need), headroom)
    granted = want.quantize(CENT_FRACTION, rounding=ROUND_DOWN)
    return granted if granted > 0 and granted >= need else ZERO
