"""Model downgrade rewrite (shared with the enforcement pipeline) and the client's local accounting."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from guardrail.client.local_spend import LocalSpend, Refusal, Ticket, book_id
from guardrail.core.config import DEFAULT_DOWNGRADES
from guardrail.core.downgrade import downgrade_model_id
from guardrail.core.models import ScopeTotals
from guardrail.core.windows import window_for

PROFILE_ARN = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/"


@pytest.mark.parametrize(
    ("called", "expected"),
    [
        ("us.anthropic.claude-sonnet-4-5-20250929-v1:0", "us.anthropic.claude-haiku-4-5-20251001-v1:0"),
        ("global.anthropic.claude-sonnet-4-5-20250929-v1:0", "global.anthropic.claude-haiku-4-5-20251001-v1:0"),
        ("eu.anthropic.claude-3-7-sonnet-20250219-v1:0", "eu.anthropic.claude-haiku-4-5-20251001-v1:0"),
        ("anthropic.claude-3-5-sonnet-20241022-v2:0", "anthropic.claude-3-5-haiku-20241022-v1:0"),
        ("anthropic.claude-3-sonnet-20240229-v1:0", "anthropic.claude-3-haiku-20240307-v1:0"),
        (
            PROFILE_ARN + "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
            PROFILE_ARN + "us.anthropic.claude-haiku-4-5-20251001-v1:0",
        ),
    ],
)
def test_sonnet_becomes_a_real_haiku_id_behind_the_same_prefix(called: str, expected: str) -> None:
    assert downgrade_model_id(called, DEFAULT_DOWNGRADES) == expected


@pytest.mark.parametrize(
    "called",
    [
        "us.anthropic.claude-haiku-4-5-20251001-v1:0",  # already the cheap family
        "anthropic.claude-3-haiku-20240307-v1:0",
        "us.meta.llama3-3-70b-instruct-v1:0",  # no rule for it
        "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/a1b2c3",  # model unknown
    ],
)
def test_models_without_a_cheaper_family_are_left_alone(called: str) -> None:
    assert downgrade_model_id(called, DEFAULT_DOWNGRADES) is None


def test_configured_families_and_full_target_ids() -> None:
    assert (
        downgrade_model_id("us.anthropic.claude-opus-4-1-20250805-v1:0", {"claude-opus": "claude-sonnet"})
        == "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
    )
    assert downgrade_model_id("us.amazon.nova-pro-v1:0", {"nova-pro": "nova-lite"}) == "us.amazon.nova-lite-v1:0"
    pinned = {"claude-sonnet": "anthropic.claude-3-5-haiku-20241022-v1:0"}
    assert (
        downgrade_model_id("us.anthropic.claude-sonnet-4-5-20250929-v1:0", pinned)
        == "us.anthropic.claude-3-5-haiku-20241022-v1:0"
    )
    assert downgrade_model_id("us.anthropic.claude-sonnet-4-5-20250929-v1:0", {}) is None


def test_requests_in_flight_count_so_one_process_overshoots_by_less_than_one_request() -> None:
    key = ("global", window_for(datetime(2026, 11, 22, 10, 0, tzinfo=UTC), "day", UTC))
    books = (book_id(key),)
    spend = LocalSpend()
    limit = (Decimal("0.20"),)
    spend.observe({key: ScopeTotals("global", key[1], spend=Decimal("0.05"))}, read_at=0.0)
    first = spend.admit(books, limit, "m")
    assert isinstance(first, Ticket)
    spend.complete(first, Decimal("0.05"), books, limit)  # the process learns: ~$0.05 per request
    running = [spend.admit(books, limit, "m") for _ in range(3)]

    # $0.10 known + 2 x $0.05 in flight reaches $0.20: the third one is refused before it starts
    assert [type(t).__name__ for t in running] == ["Ticket", "Ticket", "Refusal"]
    refusal = running[2]
    assert isinstance(refusal, Refusal) and "in flight" in refusal.reason
    for ticket in running[:2]:
        assert isinstance(ticket, Ticket)
        spend.complete(ticket, Decimal("0.05"), books, limit)
    assert spend.spend(key) == Decimal("0.20")
    assert spend.crossed_at(key) is not None
    assert spend.admitted_after_crossing == 0
