"""The batch path's claims are rendered as JSON text without building dicts: the same request item, for
any text in a record (outside text: ids, model ids, metadata, callers), as the dict the other path builds."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from guardrail.core.models import RATE_WINDOW, Price, PricedRecord, UsageRecord
from guardrail.core.windows import window_at
from guardrail.store.chunks import LedgerEntry
from guardrail.store.ledger_items import request_put, request_put_text

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
