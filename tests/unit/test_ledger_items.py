"""The batch path's claims and parts are rendered as JSON text without building dicts: the same request
items and counter Updates, for any text (outside text: ids, model ids, metadata, callers, scopes) and any
sums, as the dicts the other path (and any client the guardrail did not make) gets."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from guardrail.core.models import RATE_WINDOW, CounterKey, Price, PricedRecord, UsageRecord
from guardrail.core.windows import window_at
from guardrail.store.chunks import CounterDelta, LedgerEntry
from guardrail.store.ledger_items import counter_updates, counter_updates_text, request_put, request_put_text

ZONE = ZoneInfo("UTC")
text = st.text(min_size=1, max_size=30)  # any code point, lone surrogates and controls included


@given(
    request_id=text,
    model=text,
    caller=st.one_of(st.just(""), text),
    metadata=st.dictionaries(text, text, max_size=3),
    tokens=st.tuples(*[st.integers(0, 10**7)] * 4),
    cost=st.decimals(min_value=0, max_value=10**4, places=9, allow_nan=False),
    source=st.sampled_from(["invocation-log", "client", "event"]),
    flags=st.tuples(st.booleans(), st.booleans()),
    minutes=st.integers(0, 60 * 24 * 40),
    batch=st.one_of(st.just(""), st.text(alphabet="0123456789abcdef.", min_size=3, max_size=40)),
)
def test_the_text_is_the_dict_the_one_transaction_path_builds(
    request_id: str,
    model: str,
    caller: str,
    metadata: dict[str, str],
    tokens: tuple[int, int, int, int],
    cost: Decimal,
    source: str,
    flags: tuple[bool, bool],
    minutes: int,
    batch: str,
) -> None:
    at = datetime(2026, 11, 1, tzinfo=UTC) + timedelta(minutes=minutes)
    record = UsageRecord(
        request_id=request_id,
        timestamp=at,
        model_id=model,
        input_tokens=tokens[0],
        output_tokens=tokens[1],
        cache_read_tokens=tokens[2],
        cache_write_tokens=tokens[3],
        caller=caller,
        metadata=metadata,
        source=source,  # type: ignore[arg-type]
        partial=flags[1],
    )
    price = Price(cost=cost, priced_model=model[::-1], at_ceiling=flags[0])
    epoch = int(at.timestamp())
    counters = tuple(
        (scope, window_at(epoch, kind, ZONE)) for scope in ("global", f"app:{model}") for kind in ("day", RATE_WINDOW)
    )
    entry = LedgerEntry(PricedRecord(record, price), counters)
    expires = {"N": "1795000000"}
    rendered = request_put_text("guardrail-ledger", entry, expires, batch)
    assert json.loads(rendered) == {"Put": request_put("guardrail-ledger", entry, expires, None, batch)}
    rendered.encode("ascii")  # every non-ASCII character escaped, as botocore's serialiser sends it


money = st.decimals(min_value=-(10**6), max_value=10**6, places=9, allow_nan=False)
count = st.integers(-(10**9), 10**9)


@given(
    scopes=st.lists(text, min_size=1, max_size=3, unique=True),
    minutes=st.integers(0, 60 * 24 * 40),
    sums=st.lists(st.tuples(money, count, count, money), min_size=1, max_size=3),
    breakdown=st.dictionaries(text, st.tuples(money, count), max_size=4),
    table=text,
)
def test_counter_updates_as_text_are_the_dicts_the_other_clients_get(
    scopes: list[str],
    minutes: int,
    sums: list[tuple[Decimal, int, int, Decimal]],
    breakdown: dict[str, tuple[Decimal, int]],
    table: str,
) -> None:
    epoch = int((datetime(2026, 11, 1, tzinfo=UTC) + timedelta(minutes=minutes)).timestamp())
    counters: dict[CounterKey, CounterDelta] = {}
    for i, scope in enumerate(scopes):
        spend, requests, tokens, unconfirmed = sums[i % len(sums)]
        for kind in ("day", RATE_WINDOW):
            counters[(scope, window_at(epoch, kind, ZONE))] = CounterDelta(
                spend=spend,
                requests=requests,
                input_tokens=tokens,
                output_tokens=tokens // 3,
                cache_read_tokens=-tokens,
                cache_write_tokens=requests,
                unconfirmed=unconfirmed if i % 2 else Decimal(0),  # with and without the unconfirmed ADD
                unconfirmed_requests=requests if i % 2 else 0,
                breakdown={k: v[0] for k, v in breakdown.items()} if kind == "day" else {},
                breakdown_requests={k: v[1] for k, v in breakdown.items()} if kind == "day" else {},
            )
    rendered = [json.loads(t) for t in counter_updates_text(table, counters)]
    assert rendered == list(counter_updates(table, counters))
