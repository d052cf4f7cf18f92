"""Money on the guarded client's hot path: whole units of 10^-18 dollars (Python ints), Decimal at the edges.

A guarded call's local accounting (admission, budget leases, settlement, the reporter's bookkeeping) adds and
compares a few amounts per call; as ints that is several times cheaper than Decimal, with less code run on
the caches a Bedrock call has just cooled. Exact: a dollar amount with at most 18 decimals (every price,
cost, threshold and ledger total the guardrail makes: prices have at most a handful of decimals per million
tokens) converts to units and back unchanged. An amount with more decimals is rounded up to the next unit
(a threshold reached a 10^-18 dollar sooner), never down.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, Context, Decimal

DECIMALS = 18
SCALE: int = 10**DECIMALS  # units per dollar
_SCALE = Decimal(SCALE)
# Wide enough for any amount the guardrail meets (coefficients of up to 100 digits): no rounding but ours.
EXACT = Context(prec=100, rounding=ROUND_CEILING)


def to_units(amount: Decimal | int) -> int:
    """`amount` dollars in units: exact with at most 18 decimals, else rounded up."""
    if isinstance(amount, int):
        return amount * SCALE
    if not amount.is_finite():
        raise ValueError(f"not a finite amount of money: {amount}")
    scaled = EXACT.scaleb(amount, DECIMALS)
    whole = int(scaled)  # towards zero
    return whole if whole == scaled else int(EXACT.to_integral_value(scaled))


def to_decimal(units: int) -> Decimal:
    """`units` in dollars, exactly, without trailing zeros past the decimal point (0.05, 3, 0)."""
    return EXACT.divide(Decimal(units), _SCALE)


def limits_in_units(limits: tuple[Decimal | None, ...]) -> tuple[int | None, ...]:
    """Shutdown limits in units (a limit with more than 18 decimals rounds up: spend, in whole units,
    reaches it exactly when it reaches the rounded one)."""
    return tuple(None if limit is None else to_units(limit) for limit in limits)
