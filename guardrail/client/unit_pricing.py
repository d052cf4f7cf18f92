"""A guarded call's cost in units (guardrail.client.units): the pricer's exact Decimal rates as integer
units per token, so pricing a call is a few integer products instead of Decimal products and a division.

Exact: a rate of at most 12 decimals (dollars per million tokens) is a whole number of units per token, and
then the integer cost equals the Decimal `Rates.cost` to the unit (tests/unit/test_unit_pricing.py checks it
for any token counts). Rates with more decimals (none the guardrail knows) are priced in Decimal and
converted, as before.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING

from guardrail.client.units import EXACT, SCALE, to_units

if TYPE_CHECKING:
    from guardrail.client.usage import Usage
    from guardrail.core.pricing import Rates, TokenPrices

UNITS_PER_TOKEN = Decimal(SCALE) / Decimal(1_000_000)  # a rate is dollars per million tokens
MAX_CACHED = 256

Prices = tuple[int, int, int, int, int]  # units per token: input, output, cache read, cache write, 1-hour write


class UnitRates:
    """One `Rates` in units per token (`exact`), or a wrapper that prices in Decimal (not `exact`)."""

    __slots__ = ("base", "exact", "rates", "tiers")

    def __init__(self, rates: Rates) -> None:
        self.rates = rates
        base = _units(rates.base)
        tiers = tuple((start, _units(prices)) for start, prices in reversed(rates.tiers))
        self.exact = base is not None and all(p is not None for _, p in tiers)
        self.base: Prices = base or (0, 0, 0, 0, 0)
        self.tiers: tuple[tuple[int, Prices], ...] = tuple((s, p) for s, p in tiers if p is not None)

    def cost(self, usage: Usage) -> int:
        """`to_units(self.rates.cost(usage))`, in integers when the rates allow."""
        if not self.exact:
            return to_units(self.rates.cost(usage))  # type: ignore[arg-type]  # reads only the token counts
        inp, out, read, write, one_hour, _, _ = usage
        p = self.base
        if self.tiers:
            total = inp + read + write
            for start, prices in self.tiers:  # highest first: the highest tier passed wins
                if total > start:
                    p = prices
                    break
        cost = inp * p[0] + out * p[1]
        if read:
            cost += read * p[2]
        if write:
            cost += (write - one_hour) * p[3] + one_hour * p[4]
        return cost


def _units(prices: TokenPrices) -> Prices | None:
    out = []
    for rate in (prices.input, prices.output, prices.cache_read, prices.cache_write, prices.cache_write_1h):
        per_token = EXACT.multiply(rate, UNITS_PER_TOKEN)
        if per_token != per_token.to_integral_value():
            return None
        out.append(int(per_token))
    return (out[0], out[1], out[2], out[3], out[4])


_by_rates: dict[int, UnitRates] = {}  # id(rates) -> its UnitRates (which holds the Rates: the id stays its own)


def unit_rates(rates: Rates) -> UnitRates:
    """The UnitRates of `rates` (made once per Rates object: the pricer keeps one per model and variant)."""
    found = _by_rates.get(id(rates))
    if found is not None and found.rates is rates:
        return found
    if len(_by_rates) >= MAX_CACHED:
        _by_rates.clear()
    found = _by_rates[id(rates)] = UnitRates(rates)
    return found
