"""Pricing: exact Decimal cost from the reference prices (DESIGN.md section 7), cache tokens included."""

from __future__ import annotations

from decimal import Decimal

import boto3
import pytest
from botocore.stub import Stubber

from guardrail.core.config import TokenRates, load_settings
from guardrail.core.pricing import Pricer, base_model_ref
from tests.support.factories import record

CEILING = load_settings().ceiling_rate


def pricer(**kwargs: object) -> Pricer:
    return Pricer(ceiling=CEILING, **kwargs)  # type: ignore[arg-type]


def expected(rates: tuple[str, str, str, str], inp: int, out: int, cr: int, cw: int) -> Decimal:
    """Reference prices (USD per 1M tokens: input, output, cache write, cache read) by hand."""
    r_in, r_out, r_cw, r_cr = (Decimal(x) for x in rates)
    return (inp * r_in + out * r_out + cw * r_cw + cr * r_cr) / Decimal(1_000_000)


@pytest.mark.parametrize(
    ("model", "rates", "tokens"),
    [
        # Sonnet 4.5 geo profile: 10% over the global 3 / 15 (3.75 / 0.30).
        (
            "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
            ("3.3", "16.5", "4.125", "0.33"),
            (1200, 350, 8000, 0),
        ),
        (
            "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
            ("3.3", "16.5", "4.125", "0.33"),
            (1200, 350, 8000, 2000),
        ),
        (
            "global.anthropic.claude-sonnet-4-5-20250929-v1:0",
            ("3", "15", "3.75", "0.30"),
            (1200, 350, 8000, 2000),
        ),
        ("anthropic.claude-3-haiku-20240307-v1:0", ("0.25", "1.25", "0.25", "0.25"), (1000, 500, 0, 0)),
        ("anthropic.claude-3-5-haiku-20241022-v1:0", ("0.80", "4", "1.00", "0.08"), (1000, 200, 3000, 500)),
        ("global.anthropic.claude-haiku-4-5-20251001-v1:0", ("1", "5", "1.25", "0.10"), (3, 410, 0, 25037)),
        (
            "us.anthropic.claude-haiku-4-5-20251001-v1:0",
            ("1.1", "5.5", "1.375", "0.11"),
            (3, 410, 100, 25037),
        ),
        ("anthropic.claude-3-7-sonnet-20250219-v1:0", ("3", "15", "3.75", "0.30"), (2000, 1000, 10000, 1000)),
        (
            "us.anthropic.claude-3-7-sonnet-20250219-v1:0",
            ("3", "15", "3.75", "0.30"),
            (2000, 1000, 10000, 1000),
        ),
        (
            "us.anthropic.claude-sonnet-4-20250514-v1:0",
            ("3", "15", "3.75", "0.30"),
            (2000, 1000, 10000, 1000),
        ),
        (
            "us.anthropic.claude-opus-4-1-20250805-v1:0",
            ("15", "75", "18.75", "1.5"),
            (1000, 1000, 1000, 1000),
        ),
        ("anthropic.claude-opus-4-20250514-v1:0", ("15", "75", "18.75", "1.5"), (1000, 1000, 1000, 1000)),
    ],
)
def test_cost_matches_reference_prices_to_the_last_decimal(
    model: str, rates: tuple[str, str, str, str], tokens: tuple[int, int, int, int]
) -> None:
    inp, out, cr, cw = tokens
    price = pricer().price(
        record("r1", model=model, input_tokens=inp, output_tokens=out, cache_read=cr, cache_write=cw)
    )
    assert price.cost == expected(rates, inp, out, cr, cw)
    assert isinstance(price.cost, Decimal)
    assert not price.at_ceiling


def test_sonnet_45_us_profile_sample_is_exact() -> None:
    # The figure: 1,200 input, 350 output, 8,000 cache-read tokens.
    price = pricer().price(record("r", input_tokens=1200, output_tokens=350, cache_read=8000))
    assert price.cost == Decimal("0.012375")


def test_cache_writes_are_charged() -> None:
    base = pricer().price(record("r", input_tokens=3, output_tokens=0))
    with_writes = pricer().price(record("r", input_tokens=3, output_tokens=0, cache_write=25037))
    assert with_writes.cost - base.cost == Decimal(25037) * Decimal("4.125") / Decimal(1_000_000)


def test_unknown_model_is_priced_at_ceiling_and_flagged_never_zero() -> None:
    price = pricer().price(record("r", model="acme.mystery-model-v9:0", input_tokens=1000, output_tokens=1000))
    assert price.at_ceiling
    assert price.cost == expected(("15", "75", "18.75", "1.5"), 1000, 1000, 0, 0)


def test_price_override_wins_over_the_public_price() -> None:
    negotiated = TokenRates(input=Decimal(2), output=Decimal(10), cache_read=Decimal("0.2"), cache_write=Decimal(2))
    p = pricer(overrides={"us.anthropic.claude-sonnet-4-5-20250929-v1:0": negotiated})
    assert p.price(record("r", input_tokens=1_000_000, output_tokens=0)).cost == Decimal(2)


@pytest.mark.parametrize(
    ("model_id", "ref"),
    [
        ("anthropic.claude-3-haiku-20240307-v1:0", "anthropic.claude-3-haiku-20240307-v1:0"),
        (
            "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-haiku-20240307-v1:0",
            "anthropic.claude-3-haiku-20240307-v1:0",
        ),
        (
            "arn:aws:bedrock:us-east-1:123456789012:inference-profile/eu.anthropic.claude-sonnet-4-5-20250929-v1:0",
            "eu.anthropic.claude-sonnet-4-5-20250929-v1:0",
        ),
        ("arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc123", None),
    ],
)
def test_model_id_forms_normalise(model_id: str, ref: str | None) -> None:
    assert base_model_ref(model_id) == ref


@pytest.mark.parametrize("prefix", ["us.", "eu.", "apac.", "jp.", "au.", "global."])
def test_every_profile_prefix_is_priced(prefix: str) -> None:
    model = f"{prefix}anthropic.claude-sonnet-4-5-20250929-v1:0"
    price = pricer().price(record("r", model=model))
    assert not price.at_ceiling and price.cost > 0


def test_application_inference_profile_resolved_once_through_bedrock() -> None:
    arn = "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/team-a"
    bedrock = boto3.client("bedrock", region_name="us-east-1")
    stub = Stubber(bedrock)
    stub.add_response(
        "get_inference_profile",
        {
            "inferenceProfileName": "team-a",
            "inferenceProfileArn": arn,
            "inferenceProfileId": "team-a",
            "status": "ACTIVE",
            "type": "APPLICATION",
            "models": [
                {"modelArn": "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-haiku-20240307-v1:0"}
            ],
        },
        {"inferenceProfileIdentifier": arn},
    )
    calls = []

    def factory() -> object:
        calls.append(1)
        return bedrock

    p = pricer(bedrock_factory=factory)
    with stub:
        first = p.price(record("a", model=arn, input_tokens=1000, output_tokens=500))
        second = p.price(record("b", model=arn, input_tokens=1000, output_tokens=500))
    stub.assert_no_pending_responses()
    assert first.cost == second.cost == expected(("0.25", "1.25", "0", "0"), 1000, 500, 0, 0)
    assert not first.at_ceiling
    assert len(calls) == 1


def test_application_profile_that_cannot_be_resolved_is_priced_at_ceiling() -> None:
    arn = "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/denied"
    bedrock = boto3.client("bedrock", region_name="us-east-1")
    stub = Stubber(bedrock)
    stub.add_client_error("get_inference_profile", "AccessDeniedException", "not allowed")
    with stub:
        price = pricer(bedrock_factory=lambda: bedrock).price(record("a", model=arn))
    assert price.at_ceiling and price.cost > 0


def test_application_profile_rates_are_cached_and_re_resolved_after_the_ttl(monkeypatch: pytest.MonkeyPatch) -> None:
    import guardrail.core.pricing as pricing

    arn = "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/team-b"
    haiku = "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-haiku-20240307-v1:0"
    bedrock = boto3.client("bedrock", region_name="us-east-1")
    stub = Stubber(bedrock)
    for _ in range(2):
        stub.add_response(
            "get_inference_profile",
            {
                "inferenceProfileName": "team-b",
                "inferenceProfileArn": arn,
                "inferenceProfileId": "team-b",
                "status": "ACTIVE",
                "type": "APPLICATION",
                "models": [{"modelArn": haiku}],
            },
            {"inferenceProfileIdentifier": arn},
        )
    lookups: list[str] = []
    real = pricing.rates_from_genai_prices
    monkeypatch.setattr(pricing, "rates_from_genai_prices", lambda ref: lookups.append(ref) or real(ref))
    now = [1000.0]
    p = pricer(bedrock_factory=lambda: bedrock, profile_ttl_seconds=60.0, clock=lambda: now[0])
    with stub:
        costs = {p.price(record(f"r{i}", model=arn, input_tokens=1000, output_tokens=500)).cost for i in range(50)}
        assert lookups == ["anthropic.claude-3-haiku-20240307-v1:0"]  # once, not once per record
        now[0] += 61  # the profile may have been re-pointed: resolve it again
        p.price(record("late", model=arn))
    stub.assert_no_pending_responses()
    assert costs == {expected(("0.25", "1.25", "0", "0"), 1000, 500, 0, 0)}
    assert len(lookups) == 2


def test_override_may_set_the_one_hour_cache_write_rate() -> None:
    from dataclasses import replace

    negotiated = TokenRates.model_validate({"input": 2, "output": 10, "cache_write": "2.5", "cache_write_1h": 4})
    p = pricer(overrides={"acme.model-v1": negotiated})
    r = replace(
        record("r", model="acme.model-v1", input_tokens=0, output_tokens=0, cache_write=3000),
        cache_write_1h_tokens=1000,
    )
    assert p.price(r).cost == (2000 * Decimal("2.5") + 1000 * Decimal(4)) / Decimal(1_000_000)
