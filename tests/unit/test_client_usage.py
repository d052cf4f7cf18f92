"""The guarded client reads 1-hour cache writes from runtime responses and prices them at their rate."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import cast

from guardrail.client.usage import CONVERSE, invoke_model_usage, read_usage
from guardrail.core.config import load_settings
from guardrail.core.models import UsageRecord
from guardrail.core.pricing import Pricer


def test_converse_cache_details_give_the_one_hour_share() -> None:
    usage = {
        "inputTokens": 3,
        "outputTokens": 100,
        "cacheWriteInputTokens": 30_000,
        "cacheDetails": [{"ttl": "1h", "inputTokens": 20_000}, {"ttl": "5m", "inputTokens": 10_000}],
    }
    found = read_usage(CONVERSE, usage)
    assert found is not None and (found.cache_write_tokens, found.cache_write_1h_tokens) == (30_000, 20_000)
    rates = Pricer(ceiling=load_settings().ceiling_rate).rates_for("us.anthropic.claude-sonnet-4-5-20250929-v1:0")
    cost = rates.cost(cast(UsageRecord, found))
    assert (
        cost
        == (3 * Decimal("3.3") + 100 * Decimal("16.5") + 10_000 * Decimal("4.125") + 20_000 * Decimal("6.6")) / 10**6
    )


def test_anthropic_body_cache_creation_gives_the_one_hour_share() -> None:
    body = {
        "usage": {
            "input_tokens": 5,
            "output_tokens": 7,
            "cache_creation_input_tokens": 4000,
            "cache_creation": {"ephemeral_1h_input_tokens": 4000, "ephemeral_5m_input_tokens": 0},
        }
    }
    found = invoke_model_usage({}, json.dumps(body).encode())
    assert found is not None and found.cache_write_1h_tokens == 4000


def test_without_details_writes_are_five_minute_ones() -> None:
    found = read_usage(CONVERSE, {"inputTokens": 3, "outputTokens": 1, "cacheWriteInputTokens": 500})
    assert found is not None and found.cache_write_1h_tokens == 0
