"""Reference prices for every id form, tier and cache kind the bill knows (issue 15), computed by hand.

Rates are USD per 1M tokens from the Bedrock price list (https://aws.amazon.com/bedrock/pricing/) and
Anthropic's pricing page (long context, 1-hour cache writes); the supplemental rows cite the same pages.
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest

from guardrail.core.config import load_settings
from guardrail.core.models import UsageRecord
from guardrail.core.pricing import Pricer
from tests.support.factories import record

CEILING = load_settings().ceiling_rate
M = Decimal(1_000_000)

SONNET_45_US = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
SONNET_45_GLOBAL = "global.anthropic.claude-sonnet-4-5-20250929-v1:0"
SONNET_4_US = "us.anthropic.claude-sonnet-4-20250514-v1:0"


def usd(*terms: tuple[int, str]) -> Decimal:
    """Sum of tokens x USD-per-1M rate, exact."""
    return sum((n * Decimal(rate) for n, rate in terms), Decimal(0)) / M


def rec(model: str, inp: int = 0, out: int = 0, cr: int = 0, cw: int = 0, **extra: object) -> UsageRecord:
    r = record("r", model=model, input_tokens=inp, output_tokens=out, cache_read=cr, cache_write=cw)
    return replace(r, **extra)  # type: ignore[arg-type]


CASES = [
    # 1. Input-price-only models (embeddings): priced by their input rate, not at the ceiling.
    ("titan-embed-v2", rec("amazon.titan-embed-text-v2:0", 1200), usd((1200, "0.02"))),
    ("titan-embed-v1", rec("amazon.titan-embed-text-v1", 1200), usd((1200, "0.1"))),
    ("cohere-embed-en-v3", rec("cohere.embed-english-v3", 1200), usd((1200, "0.1"))),
    ("cohere-embed-multi-v3", rec("cohere.embed-multilingual-v3", 500), usd((500, "0.1"))),
    # 2. Tiers. genai-prices' tiered Haiku 5.5: past 100k input tokens (cache included) every kind moves up.
    ("haiku-5.5-below", rec("global.anthropic.claude-haiku-5-5", 90_000, 1000), usd((90_000, "0.1"), (1000, "0.5"))),
    (
        "haiku-5.5-above-by-cache",
        rec("global.anthropic.claude-haiku-5-5", 10_000, 1000, cr=95_000),
        usd((10_000, "0.5"), (1000, "2.5"), (95_000, "0.05")),
    ),
    # Sonnet 4.5 long context: > 200k input incl. cache -> 2x input kinds, 1.5x output (global 6 / 22.50).
    (
        "sonnet-4.5-global-230k",
        rec(SONNET_45_GLOBAL, 230_000, 2000),
        usd((230_000, "6"), (2000, "22.5")),
    ),
    (
        "sonnet-4.5-us-long-by-cache",
        rec(SONNET_45_US, 1000, 500, cr=150_000, cw=60_000),
        usd((1000, "6.6"), (500, "24.75"), (150_000, "0.66"), (60_000, "8.25")),
    ),
    ("sonnet-4.5-us-exactly-200k", rec(SONNET_45_US, 200_000, 10), usd((200_000, "3.3"), (10, "16.5"))),
    ("sonnet-4-us-230k", rec(SONNET_4_US, 230_000, 2000), usd((230_000, "6"), (2000, "22.5"))),
    # 3. 1-hour cache writes at their own rate (Sonnet 4.5 us: 6.6 vs 4.125 for 5 minutes).
    (
        "sonnet-4.5-1h-writes",
        rec(SONNET_45_US, 3, 100, cw=30_000, cache_write_1h_tokens=20_000),
        usd((3, "3.3"), (100, "16.5"), (10_000, "4.125"), (20_000, "6.6")),
    ),
    (
        "haiku-4.5-global-1h",
        rec("global.anthropic.claude-haiku-4-5-20251001-v1:0", 10, 10, cw=5000, cache_write_1h_tokens=5000),
        usd((10, "1"), (10, "5"), (5000, "2")),
    ),
    # 4. Service tiers where the record names them: priority 1.75x, flex 0.5x, batch 0.5x of standard.
    (
        "nova-pro-priority",
        rec("amazon.nova-pro-v1:0", 1000, 1000, service_tier="priority"),
        usd((1000, "1.4"), (1000, "5.6")),
    ),
    (
        "nova-pro-flex",
        rec("us.amazon.nova-pro-v1:0", 1000, 1000, service_tier="flex"),
        usd((1000, "0.4"), (1000, "1.6")),
    ),
    (
        "gpt-oss-batch",
        rec("openai.gpt-oss-120b-1:0", 2000, 1000, service_tier="batch"),
        usd((2000, "0.075"), (1000, "0.3")),
    ),
    # Latency-optimized rates where the model has them.
    (
        "haiku-3.5-latency",
        rec("us.anthropic.claude-3-5-haiku-20241022-v1:0", 1000, 1000, latency_optimized=True),
        usd((1000, "1"), (1000, "5")),
    ),
    (
        "nova-pro-latency",
        rec("us.amazon.nova-pro-v1:0", 1000, 1000, latency_optimized=True),
        usd((1000, "1"), (1000, "4")),
    ),
    # 6. Supplemental table (genai-prices has none).
    ("claude-2.1", rec("anthropic.claude-v2:1", 1000, 1000), usd((1000, "8"), (1000, "24"))),
    ("claude-instant", rec("anthropic.claude-instant-v1", 1000, 1000), usd((1000, "0.8"), (1000, "2.4"))),
    ("deepseek-v3.1", rec("us.deepseek.v3-v1:0", 1000, 1000), usd((1000, "0.58"), (1000, "1.68"))),
    ("jamba-1.5-large", rec("ai21.jamba-1-5-large-v1:0", 1000, 1000), usd((1000, "2"), (1000, "8"))),
    ("jamba-1.5-mini", rec("ai21.jamba-1-5-mini-v1:0", 1000, 1000), usd((1000, "0.2"), (1000, "0.4"))),
    ("command-r", rec("cohere.command-r-v1:0", 1000, 1000), usd((1000, "0.5"), (1000, "1.5"))),
    ("command-r-plus", rec("cohere.command-r-plus-v1:0", 1000, 1000), usd((1000, "3"), (1000, "15"))),
    (
        "nova-2-lite-base",
        rec("amazon.nova-2-lite-v1:0", 1000, 1000, cr=1000),
        usd((1000, "0.33"), (1000, "2.75"), (1000, "0.0825")),
    ),
    ("nova-2-lite-apac", rec("apac.amazon.nova-2-lite-v1:0", 1000, 1000), usd((1000, "0.33"), (1000, "2.75"))),
    # genai-prices wins where it has a price (global Nova 2 Lite is 0.30 / 2.50 there).
    ("nova-2-lite-global", rec("global.amazon.nova-2-lite-v1:0", 1000, 1000), usd((1000, "0.3"), (1000, "2.5"))),
]


@pytest.mark.parametrize(("name", "usage", "cost"), CASES, ids=[c[0] for c in CASES])
def test_reference_prices(name: str, usage: UsageRecord, cost: Decimal) -> None:
    price = Pricer(ceiling=CEILING).price(usage)
    assert price.cost == cost
    assert not price.at_ceiling
    assert price.billing == "token"


def test_issue_figure_titan_v2_is_no_longer_750x() -> None:
    assert Pricer(ceiling=CEILING).price(rec("amazon.titan-embed-text-v2:0", 1200)).cost == Decimal("0.000024")


@pytest.mark.parametrize(
    ("model", "billing"),
    [
        ("amazon.nova-canvas-v1:0", "image"),
        ("amazon.titan-image-generator-v2:0", "image"),
        ("stability.sd3-5-large-v1:0", "image"),
        ("amazon.nova-reel-v1:1", "video"),
        ("arn:aws:bedrock:us-east-1:123456789012:provisioned-model/abc123xyz", "provisioned"),
    ],
)
def test_models_not_billed_per_token_are_flagged_not_priced_at_ceiling(model: str, billing: str) -> None:
    price = Pricer(ceiling=CEILING).price(rec(model, 500, 0))
    assert price.billing == billing
    assert price.cost == 0 and not price.at_ceiling


def test_reserved_tier_is_not_token_priced() -> None:
    price = Pricer(ceiling=CEILING).price(rec("amazon.nova-pro-v1:0", 1000, 1000, service_tier="reserved"))
    assert price.billing == "reserved" and price.cost == 0


def test_zero_token_record_is_never_flagged_at_ceiling() -> None:
    price = Pricer(ceiling=CEILING).price(rec("acme.unknown-model-v1:0"))
    assert price.cost == 0 and not price.at_ceiling
    unknown = Pricer(ceiling=CEILING).price(rec("acme.unknown-model-v1:0", 10, 10))
    assert unknown.at_ceiling and unknown.cost > 0


class _Profiles:
    """GetInferenceProfile for an application profile over Sonnet 4.5 (no AWS)."""

    def get_inference_profile(self, **_: object) -> dict[str, object]:
        arn = "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-sonnet-4-5-20250929-v1:0"
        return {"models": [{"modelArn": arn}]}


@pytest.mark.parametrize(
    "model",
    [
        "anthropic.claude-sonnet-4-5-20250929-v1:0",
        SONNET_45_US,
        "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-sonnet-4-5-20250929-v1:0",
        "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-sonnet-4-5-20250929-v1:0",
        "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/team-a",
    ],
)
def test_every_regional_id_form_prices_a_long_context_request_alike(model: str) -> None:
    # 8. The application profile ARN resolves to the regional Sonnet 4.5 rate, cached like the others.
    p = Pricer(ceiling=CEILING, bedrock_factory=_Profiles)  # type: ignore[arg-type]
    usage = rec(model, 1000, 500, cr=150_000, cw=60_000, cache_write_1h_tokens=10_000)
    expected = usd((1000, "6.6"), (500, "24.75"), (150_000, "0.66"), (50_000, "8.25"), (10_000, "13.2"))
    assert [p.price(usage).cost for _ in range(3)] == [expected] * 3
