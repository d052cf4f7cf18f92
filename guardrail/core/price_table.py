"""Supplemental Bedrock prices, for models genai-prices does not carry, and the billing facts around them.

Every row names the public page its numbers come from. A row is used only when genai-prices has no price
for the model (an override beats both). Prices are USD per 1M tokens, written as strings so they stay exact.
Rows match the model id with its geo/global profile prefix removed, by the longest `match` prefix.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

# How Bedrock bills a model: per token (priced here), or by something a usage record cannot price.
Billing = Literal["token", "image", "video", "provisioned", "reserved"]

AWS_PRICING = "https://aws.amazon.com/bedrock/pricing/"
# Anthropic states the long-context premium and the 1-hour cache write multiple for every platform.
ANTHROPIC_PRICING = "https://platform.claude.com/docs/en/about-claude/pricing"
SERVICE_TIERS = "https://docs.aws.amazon.com/bedrock/latest/userguide/service-tiers-inference.html"

# Profile prefixes of Bedrock ids, and genai-prices' own "regional." prefix for its geo-profile rows.
GEO_PREFIXES = ("us-gov.", "us.", "eu.", "apac.", "jp.", "au.", "ca.", "in.", "global.", "regional.")


@dataclass(frozen=True, slots=True)
class Row:
    match: str  # a base model id prefix, without a geo/global profile prefix
    input: str
    output: str = "0"
    cache_read: str | None = None  # None: charged at the input rate
    cache_write: str | None = None
    source: str = AWS_PRICING
    billing: Billing = "token"


SUPPLEMENTAL: tuple[Row, ...] = (
    # Anthropic Claude 2.x and Instant (legacy, on-demand).
    Row("anthropic.claude-v2", "8", "24"),
    Row("anthropic.claude-instant-v1", "0.8", "2.4"),
    # DeepSeek V3.1.
    Row("deepseek.v3-v1", "0.58", "1.68"),
    # AI21 Jamba.
    Row("ai21.jamba-1-5-large", "2", "8"),
    Row("ai21.jamba-1-5-mini", "0.2", "0.4"),
    Row("ai21.jamba-instruct", "0.5", "0.7"),
    # Cohere Command R / R+ and Embed v3 (embeddings have an input price only).
    Row("cohere.command-r-plus", "3", "15"),
    Row("cohere.command-r-v1", "0.5", "1.5"),
    Row("cohere.embed-english-v3", "0.1"),
    Row("cohere.embed-multilingual-v3", "0.1"),
    # Nova 2 Lite by its base id and the geo profiles genai-prices does not list: the regional rate
    # (genai-prices prices us./eu./jp. at the same 0.33 / 2.75 / 0.0825).
    Row("amazon.nova-2-lite", "0.33", "2.75", cache_read="0.0825"),
    # Billed per image or per second of video: a token count cannot price them.
    Row("amazon.nova-canvas", "0", billing="image"),
    Row("amazon.titan-image-generator", "0", billing="image"),
    Row("stability.", "0", billing="image"),
    Row("amazon.nova-reel", "0", billing="video"),
)

# Latency-optimized inference (`performanceConfig.latency = optimized`) has its own rates on the few
# models that offer it; elsewhere Bedrock serves the request at the standard rate.
LATENCY_OPTIMIZED: tuple[Row, ...] = (
    Row("anthropic.claude-3-5-haiku", "1", "5", cache_read="0.1", cache_write="1.25"),
    Row("amazon.nova-pro", "1", "4", cache_read="0.25"),
)

# Service tiers and batch as a multiple of the standard on-demand rate, on every token kind.
TIER_MULTIPLIERS: dict[str, tuple[Decimal, str]] = {
    "priority": (Decimal("1.75"), AWS_PRICING),
    "flex": (Decimal("0.5"), AWS_PRICING),
    "batch": (Decimal("0.5"), AWS_PRICING),
}
NOT_TOKEN_TIERS: dict[str, Billing] = {"reserved": "reserved"}  # billed for reserved capacity, not per token

# Long context: a request with more than `start` input tokens (cache reads and writes included) pays
# `input_factor` on every input kind and `output_factor` on output, for the whole request.
LONG_CONTEXT_START = 200_000
LONG_CONTEXT: tuple[tuple[str, Decimal, Decimal, str], ...] = (
    ("anthropic.claude-sonnet-4-5-20250929", Decimal(2), Decimal("1.5"), ANTHROPIC_PRICING),
    ("anthropic.claude-sonnet-4-20250514", Decimal(2), Decimal("1.5"), ANTHROPIC_PRICING),
)
# A 1-hour cache write costs twice the base input rate on every Claude model (used where genai-prices
# has no 1-hour price).
CLAUDE_1H_WRITE_FACTOR = (Decimal(2), ANTHROPIC_PRICING)


def strip_geo(model_ref: str) -> str:
    for prefix in GEO_PREFIXES:
        if model_ref.startswith(prefix):
            return model_ref[len(prefix) :]
    return model_ref


def find(rows: tuple[Row, ...], model_ref: str) -> Row | None:
    """The row with the longest `match` prefix of the model id (geo prefix removed), if any."""
    base = strip_geo(model_ref)
    best: Row | None = None
    for row in rows:
        if base.startswith(row.match) and (best is None or len(row.match) > len(best.match)):
            best = row
    return best


def long_context(model_ref: str) -> tuple[Decimal, Decimal, str] | None:
    base = strip_geo(model_ref)
    for match, input_factor, output_factor, source in LONG_CONTEXT:
        if base.startswith(match):
            return input_factor, output_factor, source
    return None
