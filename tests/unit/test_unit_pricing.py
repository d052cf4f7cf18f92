"""The guarded client's integer money: units of 10^-18 dollars, and calls priced in them, equal the exact
Decimal amounts and costs for any amounts and token counts."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from guardrail.client.unit_pricing import UnitRates, unit_rates
from guardrail.client.units import SCALE, limits_in_units, to_decimal, to_units
from guardrail.client.usage import Usage
from guardrail.core.config import load_settings
from guardrail.core.price_table import TIER_MULTIPLIERS
from guardrail.core.pricing import Pricer, Rates, TokenPrices

# USD per million tokens, as price tables write them (up to 6 decimals), and as a tier multiplier leaves them.
rate = st.decimals(min_value=0, max_value=1000, places=6, allow_nan=False, allow_infinity=False)
tokens = st.integers(min_value=0, max_value=10**9)
prices = st.builds(TokenPrices, rate, rate, rate, rate, rate)


@st.composite
def usages(draw: st.DrawFn) -> Usage:
    write = draw(tokens)
    return Usage(draw(tokens), draw(tokens), draw(tokens), write, draw(st.integers(0, write)))


@st.composite
def all_rates(draw: st.DrawFn) -> Rates:
    starts = sorted(set(draw(st.lists(st.integers(0, 10**6), max_size=3))))
    tiers = tuple((start, draw(prices)) for start in starts)
    return Rates(draw(prices), source="m", tiers=tiers)


@given(rates=all_rates(), usage=usages())
def test_a_call_priced_in_units_costs_exactly_the_decimal_price(rates: Rates, usage: Usage) -> None:
    unit = UnitRates(rates)
    assert unit.exact
    cost = unit.cost(usage)
    assert type(cost) is int
    assert to_decimal(cost) == rates.cost(usage)  # type: ignore[arg-type]
    assert cost == to_units(rates.cost(usage))  # type: ignore[arg-type]


@given(rates=all_rates(), usage=usages(), tier=st.sampled_from(sorted(TIER_MULTIPLIERS)))
def test_tier_multiplied_rates_are_priced_exactly_too(rates: Rates, usage: Usage, tier: str) -> None:
    scaled = rates.scaled(TIER_MULTIPLIERS[tier][0])
    assert unit_rates(scaled).cost(usage) == to_units(scaled.cost(usage))  # type: ignore[arg-type]


def test_rates_finer_than_a_unit_per_token_are_priced_in_decimal_and_rounded_up() -> None:
    third = Decimal(1) / Decimal(3)  # 28 digits: not a whole number of units per token
    rates = Rates(TokenPrices(third, third, third, third, third), source="m")
    unit = UnitRates(rates)
    assert not unit.exact
    usage = Usage(7, 0)
    assert unit.cost(usage) == to_units(rates.cost(usage))  # type: ignore[arg-type]
    assert to_decimal(unit.cost(usage)) >= rates.cost(usage)  # type: ignore[arg-type]


def test_the_configured_prices_are_whole_units_per_token() -> None:
    pricer = Pricer(ceiling=load_settings().ceiling_rate)
    for model in ("us.anthropic.claude-sonnet-4-5-20250929-v1:0", "amazon.nova-lite-v1:0", "ceiling-model"):
        assert unit_rates(pricer.rates_for(model)).exact, model


@given(st.decimals(min_value=-(10**12), max_value=10**12, places=18, allow_nan=False, allow_infinity=False))
def test_dollars_with_up_to_18_decimals_round_trip_exactly(amount: Decimal) -> None:
    units = to_units(amount)
    assert to_decimal(units) == amount
    sign, digits, exponent = amount.as_tuple()
    assert isinstance(exponent, int) and exponent >= -18
    by_hand = int("".join(map(str, digits))) * 10 ** (18 + exponent)
    assert units == (-by_hand if sign else by_hand)


@given(st.decimals(min_value=0, max_value=10**6, places=24, allow_nan=False, allow_infinity=False))
def test_finer_amounts_round_up_so_a_limit_is_reached_exactly_when_spend_reaches_it(limit: Decimal) -> None:
    (units,) = limits_in_units((limit,))
    assert units is not None
    assert to_decimal(units) >= limit > to_decimal(units - 1)
    # Spend is whole units: it reaches the limit exactly when it reaches the rounded limit.
    for spend in (units - 1, units, units + 1):
        assert (spend >= units) == (to_decimal(spend) >= limit)


def test_amounts_print_as_dollars_without_trailing_zeros() -> None:
    assert str(to_decimal(to_units(Decimal("0.050000")))) == "0.05"
    assert str(to_decimal(to_units(Decimal(25)))) == "25"
    assert to_units(3) == 3 * SCALE
    with pytest.raises(ValueError, match="finite"):
        to_units(Decimal("Infinity"))
