"""Which copy of a request counts (DESIGN.md section 11).

The invocation log, written by Bedrock, is authoritative; a client report (a ledger-mode client or a
`Bedrock Usage` event) is provisional. A copy supersedes the one the ledger holds when it is authoritative
and the held one is not, or when it carries more tokens than a held copy of the same authority (an
abandoned stream is reported with what it had generated; the full count comes later). Anything else is a
duplicate.

The request item keeps what it counted (tokens, cost, breakdown dimensions, every counter key), so a
superseding copy can take exactly that back out of the counters in the transaction that replaces it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, cast

from guardrail.core.models import CounterKey, UsageRecord, WindowKind, WindowRef

AUTHORITATIVE = "invocation-log"


def tokens(record: UsageRecord) -> int:
    return record.input_tokens + record.output_tokens + record.cache_read_tokens + record.cache_write_tokens


def is_authoritative(source: str) -> bool:
    return source == AUTHORITATIVE


def supersedes(new_source: str, new_tokens: int, held_source: str, held_tokens: int) -> bool:
    """Does a copy (`new_*`) replace the one held? Rank is (authoritative, tokens): a log beats any client
    copy, a fuller copy beats a partial one of the same authority, and an equal copy is a duplicate. Ranks
    only go up, so copies converge on the best one in any order and never flap."""
    return (is_authoritative(new_source), new_tokens) > (is_authoritative(held_source), held_tokens)


def better(new: UsageRecord, held: UsageRecord) -> bool:
    """Two copies inside one batch resolve by the same rule as against the ledger."""
    return supersedes(new.source, tokens(new), held.source, tokens(held))


_ATTRIBUTES: dict[tuple[CounterKey, ...], dict[str, Any]] = {}
_ELEMENTS: dict[CounterKey, dict[str, Any]] = {}
_MAX_CACHED = 16384  # a day of 5-minute buckets at 50 scopes: about 8 MB


def counter_element(counter: CounterKey) -> dict[str, Any]:
    """One counter as the request item keeps it: [scope, kind, start, end] (cached; never mutated)."""
    element = _ELEMENTS.get(counter)
    if element is None:
        if len(_ELEMENTS) >= _MAX_CACHED:
            _ELEMENTS.clear()
        s, w = counter
        element = _ELEMENTS[counter] = {
            "L": [{"S": s}, {"S": w.kind}, {"S": w.start.isoformat()}, {"S": w.end.isoformat()}]
        }
    return element


def counters_attribute(counters: tuple[CounterKey, ...]) -> dict[str, Any]:
    """Every counter a copy added to, as the request item keeps it.

    Records of one batch mostly share their counters, if not the whole tuple (a batch spread over a day
    has one 5-minute bucket per record): the attribute is built once per distinct tuple from elements built
    once per counter (bounded caches; callers never mutate the returned value)."""
    attribute = _ATTRIBUTES.get(counters)
    if attribute is None:
        if len(_ATTRIBUTES) >= _MAX_CACHED:
            _ATTRIBUTES.clear()
        attribute = _ATTRIBUTES[counters] = {"L": [counter_element(c) for c in counters]}
    return attribute


@dataclass(frozen=True, slots=True)
class HeldCopy:
    """The copy a request item holds: what it added, to which counters."""

    source: str
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    cost: Decimal
    model_id: str
    app: str
    caller: str
    counters: tuple[CounterKey, ...]
    batch: str = ""  # the ledger batch that counts it (guardrail.store.batches); "" when written in one transaction

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens + self.cache_read_tokens + self.cache_write_tokens

    @classmethod
    def from_item(cls, item: dict[str, Any] | None) -> HeldCopy | None:
        """None when the item cannot be corrected: gone (TTL), or written before items kept counters."""
        if not item or "counters" not in item:
            return None

        def n(name: str) -> int:
            return int(item[name]["N"]) if name in item else 0

        counters = tuple(
            (
                c["L"][0]["S"],
                WindowRef(
                    cast(WindowKind, c["L"][1]["S"]),
                    datetime.fromisoformat(c["L"][2]["S"]),
                    datetime.fromisoformat(c["L"][3]["S"]),
                ),
            )
            for c in item["counters"]["L"]
        )
        metadata = item.get("metadata", {}).get("M", {})
        return cls(
            source=item["source"]["S"],
            input_tokens=n("input_tokens"),
            output_tokens=n("output_tokens"),
            cache_read_tokens=n("cache_read_tokens"),
            cache_write_tokens=n("cache_write_tokens"),
            cost=Decimal(item["cost_usd"]["N"]),
            model_id=item["model_id"]["S"],
            app=metadata.get("app", {}).get("S", ""),
            caller=item.get("caller", {}).get("S", ""),
            counters=counters,
            batch=item.get("batch", {}).get("S", ""),
        )

    def condition(self) -> dict[str, Any]:
        """ConditionExpression and its names/values: the item still holds exactly this copy."""
        fields = {
            "source": {"S": self.source},
            "input_tokens": {"N": str(self.input_tokens)},
            "output_tokens": {"N": str(self.output_tokens)},
            "cache_read_tokens": {"N": str(self.cache_read_tokens)},
            "cache_write_tokens": {"N": str(self.cache_write_tokens)},
            "cost_usd": {"N": format(self.cost, "f")},
        }
        names = {f"#h{i}": name for i, name in enumerate(fields)}
        values = {f":h{i}": value for i, value in enumerate(fields.values())}
        return {
            "ConditionExpression": " AND ".join(f"#h{i} = :h{i}" for i in range(len(fields))),
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
        }
