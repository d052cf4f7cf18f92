"""The guarded client reads 1-hour cache writes from runtime responses and prices them at their rate."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any, cast

from hypothesis import given
from hypothesis import strategies as st

from guardrail.client.usage import ANTHROPIC, CONVERSE, UNSURE, count, invoke_model_usage, read_usage, top_level_usage
from guardrail.core.config import load_settings
from guardrail.core.models import UsageRecord
from guardrail.core.pricing import Pricer
from guardrail.core.usage_event import one_hour_cache_writes


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


counts = st.one_of(st.none(), st.integers(-5, 10**7), st.sampled_from(["12", "x", True]))


@given(
    fields=st.fixed_dictionaries(
        {"inputTokens": counts},
        optional={"outputTokens": counts, "cacheReadInputTokens": counts, "cacheWriteInputTokens": counts},
    ),
    details=st.one_of(
        st.none(),
        st.lists(st.fixed_dictionaries({"ttl": st.sampled_from(["1h", "5m"]), "inputTokens": counts}), max_size=3),
    ),
)
def test_read_usage_is_the_contracts_reading(fields: dict[str, Any], details: list[Any] | None) -> None:
    """The fast path reads what the contract's helpers read: counts as `count` makes them, the 1-hour share
    capped at the cache writes."""
    source = {**fields, **({"cacheDetails": details} if details is not None else {})}
    found = read_usage(CONVERSE, source)
    write = count(source.get("cacheWriteInputTokens"))
    assert found == (
        count(source.get("inputTokens")),
        count(source.get("outputTokens")),
        count(source.get("cacheReadInputTokens")),
        write,
        min(one_hour_cache_writes(source), write),
        "",
        False,
    )


# -- InvokeModel bodies: the top-level usage read without parsing the answer ---------------------------------

scalars = st.one_of(st.none(), st.booleans(), st.integers(-(10**6), 10**6), st.text(max_size=12))
keys = st.sampled_from(["usage", "content", "text", "input", "type", 'say "usage": {}', "cache_usage"])
values = st.recursive(
    st.one_of(scalars, st.sampled_from(['"usage":{"input_tokens":1}}', "usage", '\\"usage\\":'])),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(keys, inner, max_size=3)),
    max_leaves=12,
)


@given(
    members=st.lists(st.tuples(keys, values), max_size=5),
    usage=st.one_of(st.none(), values),
    layout=st.sampled_from([{}, {"separators": (",", ":")}, {"indent": 2}, {"ensure_ascii": False}]),
)
def test_the_top_level_usage_is_what_json_loads_reads(
    members: list[tuple[str, Any]], usage: Any, layout: dict[str, Any]
) -> None:
    doc = dict(members)
    if usage is not None:  # written last, as Anthropic's Messages API writes it
        doc.pop("usage", None)
        doc["usage"] = usage
    body = json.dumps(doc, **layout).encode()
    found = top_level_usage(body)
    if found is not UNSURE:
        assert "usage" in doc and found == json.loads(body)["usage"]
    if usage is not None and '"usage"' not in json.dumps(usage, **layout):
        assert found == usage  # the usual layout is read without parsing the rest
    # And what the client reads is what parsing the whole body gives
    whole = read_usage(ANTHROPIC, json.loads(body).get("usage"))
    assert invoke_model_usage({}, body) == whole


def test_an_answer_that_talks_about_usage_is_not_read_as_its_usage() -> None:
    text = 'the field is "usage": {"input_tokens": 999999}}'
    body = json.dumps({"content": [{"type": "text", "text": text}], "usage": {"input_tokens": 7}}).encode()
    assert top_level_usage(body) == {"input_tokens": 7}
    tool = {"content": [{"type": "tool_use", "input": {"usage": {"input_tokens": 999999}}}]}
    assert top_level_usage(json.dumps(tool).encode()) is UNSURE  # nested: the body is parsed whole
    usage = invoke_model_usage({}, json.dumps({**tool, "usage": {"input_tokens": 7}}).encode())
    assert usage is not None and usage.input_tokens == 7
