"""The ledger's writes in DynamoDB's wire format: a request item's Put, a counter's and a breakdown item's ADD
(key formats: guardrail.store.table). Shared by the one-transaction path (guardrail.store.ledger) and the
batch path (guardrail.store.batches), so both write exactly the same items."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, timedelta
from decimal import Decimal
from functools import lru_cache
from json.encoder import encode_basestring_ascii as _quote
from typing import Any

from guardrail.core.models import RATE_WINDOW, CounterKey, WindowRef
from guardrail.store.chunks import CounterDelta, LedgerEntry, num
from guardrail.store.copies import HeldCopy, counter_element, counters_attribute
from guardrail.store.table import breakdown_key, counter_key, item_key, request_key

RATE_BUCKET_TTL = timedelta(days=2)
_NAMES = {
    "#spend": "spend_usd",
    "#req": "requests",
    "#in": "input_tokens",
    "#out": "output_tokens",
    "#cr": "cache_read_tokens",
    "#cw": "cache_write_tokens",
    "#scope": "scope",
    "#ws": "window_start",
    "#we": "window_end",
}


def request_put(
    table: str, entry: LedgerEntry, expires: dict[str, str], held: HeldCopy | None, batch: str = ""
) -> dict[str, Any]:
    """The request item: what it counted (so a better copy can take it back out) and, on the batch path,
    the batch that counts it."""
    r = entry.priced.record
    price = entry.priced.price
    item: dict[str, Any] = {
        **item_key(request_key(r.request_id)),
        "at": {"S": r.timestamp.astimezone(UTC).isoformat()},
        "model_id": {"S": r.model_id},
        "priced_as": {"S": price.priced_model},
        "cost_usd": num(price.cost),
        "input_tokens": num(r.input_tokens),
        "output_tokens": num(r.output_tokens),
        "cache_read_tokens": num(r.cache_read_tokens),
        "cache_write_tokens": num(r.cache_write_tokens),
        "source": {"S": r.source},
        "counters": counters_attribute(entry.counters),  # what a later, better copy takes back out
        "expires_at": expires,
    }
    if r.caller:
        item["caller"] = {"S": r.caller}
    if r.metadata:
        item["metadata"] = {"M": {k: {"S": v} for k, v in r.metadata.items()}}
    if price.at_ceiling:
        item["at_ceiling"] = {"BOOL": True}
    if r.partial:
        item["partial"] = {"BOOL": True}
    if batch:
        item["batch"] = {"S": batch}
    # A new request, or the copy we replace still as we read it. On failure the item comes back with the
    # cancellation (ALL_OLD): deciding duplicate or correction needs no extra read.
    condition = {"ConditionExpression": "attribute_not_exists(pk)"} if held is None else held.condition()
    return {"TableName": table, "Item": item, "ReturnValuesOnConditionCheckFailure": "ALL_OLD", **condition}


@lru_cache(maxsize=16384)  # a batch names each counter once, and the next batch mostly the same ones
def _counter_static(scope: str, window: WindowRef) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """What a counter's Update says whatever the sums: its key, the window it covers, its TTL."""
    values: dict[str, Any] = {
        ":scope": {"S": scope},
        ":ws": {"S": window.start.isoformat()},
        ":we": {"S": window.end.isoformat()},
    }
    names = dict(_NAMES)
    if window.kind == RATE_WINDOW:  # burn-rate buckets are only read for a few hours
        names["#exp"] = "expires_at"
        values[":exp"] = num(int((window.end + RATE_BUCKET_TTL).timestamp()))
    return item_key(counter_key((scope, window))), names, values


_ADD = "ADD #spend :spend, #req :req, #in :in, #out :out, #cr :cr, #cw :cw"
_ADD_UNCONFIRMED = _ADD + ", #uc :uc, #ucr :ucr"
_SET = " SET #scope = :scope, #ws = :ws, #we = :we"
_SET_EXPIRY = _SET + ", #exp = :exp"


_TEXT_CACHE: dict[tuple[CounterKey, ...], str] = {}
_ELEMENT_TEXT: dict[CounterKey, str] = {}
_MAX_TEXTS = 16384


def _counters_text(counters: tuple[CounterKey, ...]) -> str:
    """`counters_attribute(counters)` as JSON text, built from each counter's text (shared by the records of
    a batch even when their tuples differ, as a batch spread over a day's do: one 5-minute bucket each)."""
    text = _TEXT_CACHE.get(counters)
    if text is None:
        if len(_TEXT_CACHE) >= _MAX_TEXTS:
            _TEXT_CACHE.clear()
        if len(_ELEMENT_TEXT) >= _MAX_TEXTS:
            _ELEMENT_TEXT.clear()
        elements = []
        for counter in counters:
            element = _ELEMENT_TEXT.get(counter)
            if element is None:
                element = _ELEMENT_TEXT[counter] = _dumps(counter_element(counter))
            elements.append(element)
        text = _TEXT_CACHE[counters] = '{"L":[' + ",".join(elements) + "]}"
    return text


def _s(text: str) -> str:
    return '{"S":' + _quote(text) + "}"


def request_put_text(table: str, entry: LedgerEntry, expires: dict[str, str], batch: str) -> str:
    """`{"Put": request_put(table, entry, expires, None, batch)}` rendered as JSON text, without building
    the dicts (the batch path's claims: one per request; tests/unit/test_ledger_items.py checks the two
    are the same request). Strings are escaped by json's own encoder (ASCII, as botocore sends them).
    One f-string: a helper call per attribute was a third of this function's time."""
    r = entry.priced.record
    price = entry.priced.price
    pk, sk = request_key(r.request_id)
    at = r.timestamp if r.timestamp.tzinfo is UTC else r.timestamp.astimezone(UTC)
    text = (
        f'{{"Put":{{"TableName":{_quote(table)},"Item":{{"pk":{{"S":{_quote(pk)}}},"sk":{{"S":{_quote(sk)}}}'
        f',"at":{{"S":"{at.isoformat()}"}},"model_id":{{"S":{_quote(r.model_id)}}}'
        f',"priced_as":{{"S":{_quote(price.priced_model)}}},"cost_usd":{{"N":"{price.cost:f}"}}'
        f',"input_tokens":{{"N":"{r.input_tokens:d}"}},"output_tokens":{{"N":"{r.output_tokens:d}"}}'
        f',"cache_read_tokens":{{"N":"{r.cache_read_tokens:d}"}},"cache_write_tokens":{{"N":"{r.cache_write_tokens:d}"}}'
        f',"source":{{"S":{_quote(r.source)}}},"counters":{_counters_text(entry.counters)}'
        f',"expires_at":{{"N":"{expires["N"]}"}}'
    )
    if r.caller:
        text += f',"caller":{{"S":{_quote(r.caller)}}}'
    if r.metadata:
        text += (
            ',"metadata":{"M":{' + ",".join([f'{_quote(k)}:{{"S":{_quote(v)}}}' for k, v in r.metadata.items()]) + "}}"
        )
    if price.at_ceiling:
        text += ',"at_ceiling":{"BOOL":true}'
    if r.partial:
        text += ',"partial":{"BOOL":true}'
    if batch:
        text += f',"batch":{{"S":{_quote(batch)}}}'
    return text + '},"ReturnValuesOnConditionCheckFailure":"ALL_OLD","ConditionExpression":"attribute_not_exists(pk)"}}'


def counter_update(table: str, scope: str, window: WindowRef, delta: CounterDelta) -> dict[str, Any]:
    key, names, static = _counter_static(scope, window)
    values: dict[str, Any] = {
        **static,
        ":spend": num(delta.spend),
        ":req": num(delta.requests),
        ":in": num(delta.input_tokens),
        ":out": num(delta.output_tokens),
        ":cr": num(delta.cache_read_tokens),
        ":cw": num(delta.cache_write_tokens),
    }
    add = _ADD
    if delta.unconfirmed or delta.unconfirmed_requests:  # only client copies move it: logs write no more
        names = {**names, "#uc": "unconfirmed_usd", "#ucr": "unconfirmed_requests"}
        values[":uc"] = num(delta.unconfirmed)
        values[":ucr"] = num(delta.unconfirmed_requests)
        add = _ADD_UNCONFIRMED
    return {
        "TableName": table,
        "Key": key,  # shared between calls: never mutated
        "UpdateExpression": add + (_SET_EXPIRY if window.kind == RATE_WINDOW else _SET),
        "ExpressionAttributeNames": names,
        "ExpressionAttributeValues": values,
    }


def breakdown_update(
    table: str, scope: str, window: WindowRef, key: str, spend: Decimal, requests: int
) -> dict[str, Any]:
    return {
        "TableName": table,
        "Key": item_key(breakdown_key(scope, window, key)),
        "UpdateExpression": "ADD spend_usd :s, requests :n SET by_key = :k",
        "ExpressionAttributeValues": {":s": num(spend), ":n": num(requests), ":k": {"S": key}},
    }


def counter_updates(table: str, counters: dict[CounterKey, CounterDelta]) -> Iterator[dict[str, Any]]:
    """Every Update that applies these sums: each counter, then its breakdown items."""
    for (scope, window), delta in counters.items():
        yield {"Update": counter_update(table, scope, window, delta)}
        requests = delta.breakdown_requests
        for key, spend in delta.breakdown.items():
            yield {"Update": breakdown_update(table, scope, window, key, spend, requests[key])}


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


@lru_cache(maxsize=8)
def _names_text(rate: bool, unconfirmed: bool) -> str:
    names = dict(_NAMES)
    if rate:
        names["#exp"] = "expires_at"
    if unconfirmed:
        names.update({"#uc": "unconfirmed_usd", "#ucr": "unconfirmed_requests"})
    expression = (_ADD_UNCONFIRMED if unconfirmed else _ADD) + (_SET_EXPIRY if rate else _SET)
    return f'"UpdateExpression":{_dumps(expression)},"ExpressionAttributeNames":{_dumps(names)}'


def _key_text(key: tuple[str, str]) -> str:
    return '{"pk":' + _s(key[0]) + ',"sk":' + _s(key[1]) + "}"


@lru_cache(maxsize=16384)
def _counter_prefix(table: str, scope: str, window: WindowRef, unconfirmed: bool) -> str:
    """Everything of a counter's Update but its sums (the text of `counter_update`'s static part)."""
    rate = window.kind == RATE_WINDOW
    values = f'":scope":{_s(scope)},":ws":{_s(window.start.isoformat())},":we":{_s(window.end.isoformat())}'
    if rate:
        values += f',":exp":{{"N":"{int((window.end + RATE_BUCKET_TTL).timestamp()):d}"}}'
    return (
        f'{{"Update":{{"TableName":{_quote(table)},"Key":{_key_text(counter_key((scope, window)))},'
        f'{_names_text(rate, unconfirmed)},"ExpressionAttributeValues":{{{values}'
    )


@lru_cache(maxsize=16384)
def _breakdown_prefix(table: str, scope: str, window: WindowRef, key: str) -> str:
    return (
        f'{{"Update":{{"TableName":{_quote(table)},"Key":{_key_text(breakdown_key(scope, window, key))},'
        '"UpdateExpression":"ADD spend_usd :s, requests :n SET by_key = :k",'
        f'"ExpressionAttributeValues":{{":k":{_s(key)}'
    )


def counter_updates_text(table: str, counters: dict[CounterKey, CounterDelta]) -> Iterator[str]:
    """`counter_updates` rendered as JSON text (the batch path's parts on the runtime's own client), from
    cached per-item prefixes: only the sums are formatted per call (tests/unit/test_ledger_items.py)."""
    for (scope, window), d in counters.items():
        unconfirmed = bool(d.unconfirmed or d.unconfirmed_requests)
        text = (
            _counter_prefix(table, scope, window, unconfirmed)
            + f',":spend":{{"N":"{d.spend:f}"}},":req":{{"N":"{d.requests:d}"}},":in":{{"N":"{d.input_tokens:d}"}}'
            + f',":out":{{"N":"{d.output_tokens:d}"}},":cr":{{"N":"{d.cache_read_tokens:d}"}}'
            + f',":cw":{{"N":"{d.cache_write_tokens:d}"}}'
        )
        if unconfirmed:
            text += f',":uc":{{"N":"{d.unconfirmed:f}"}},":ucr":{{"N":"{d.unconfirmed_requests:d}"}}'
        yield text + "}}}"
        requests = d.breakdown_requests
        for key, spend in d.breakdown.items():
            yield (
                _breakdown_prefix(table, scope, window, key)
                + f',":s":{{"N":"{spend:f}"}},":n":{{"N":"{requests[key]:d}"}}}}}}}}'
            )
