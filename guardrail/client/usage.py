"""Token usage out of Bedrock responses (pure).

Every response shape says the same four counts under its own names; one table maps them, and one
function reads any shape. Bedrock's input count excludes cache tokens in every shape.
"""

from __future__ import annotations

import json
import logging
import math
import uuid
from collections.abc import Mapping
from typing import Any, NamedTuple

from guardrail.core.usage_event import one_hour_cache_writes, tier_name

logger = logging.getLogger("guardrail.client")

CHARS_PER_TOKEN = 4  # only for estimating what an abandoned stream had not been told yet


class Usage(NamedTuple):
    """Token counts of one response. `input_tokens` excludes cache tokens, as Bedrock reports them."""

    input_tokens: int
    output_tokens: int
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cache_write_1h_tokens: int = 0  # the part of cache_write_tokens written with a 1-hour TTL
    service_tier: str = ""  # as the response names it; "" for standard
    latency_optimized: bool = False


class Shape(NamedTuple):
    """Where one response shape keeps the four counts (input, output, cache read, cache write)."""

    input: str
    output: str
    cache_read: str
    cache_write: str


# Converse `usage` and the ConverseStream `metadata` event's `usage`.
CONVERSE = Shape("inputTokens", "outputTokens", "cacheReadInputTokens", "cacheWriteInputTokens")
# Anthropic Messages `usage` (InvokeModel bodies, `message_start` stream events).
ANTHROPIC = Shape("input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens")
# `amazon-bedrock-invocationMetrics` in the last chunk of InvokeModelWithResponseStream.
INVOCATION_METRICS = Shape(
    "inputTokenCount", "outputTokenCount", "cacheReadInputTokenCount", "cacheWriteInputTokenCount"
)
# InvokeModel HTTP headers (not in botocore's model).
HEADERS = Shape(
    "x-amzn-bedrock-input-token-count",
    "x-amzn-bedrock-output-token-count",
    "x-amzn-bedrock-cache-read-input-token-count",
    "x-amzn-bedrock-cache-write-input-token-count",
)
INVOCATION_METRICS_KEY = "amazon-bedrock-invocationMetrics"


def count(value: Any) -> int:
    """A token count as Bedrock sent it (int or numeric text); anything else, or negative, is 0."""
    if type(value) is int:
        return value if value > 0 else 0
    if isinstance(value, bool) or value is None:
        return 0
    if isinstance(value, int):
        return max(0, value)
    try:
        return max(0, int(str(value)))
    except ValueError:
        return 0


def read_usage(shape: Shape, source: Any) -> Usage | None:
    """The usage in `source` under `shape`'s names; None when it carries no input count."""
    # type() first: an ABC isinstance check costs more than the rest of a call's usage reading.
    if (type(source) is not dict and not isinstance(source, Mapping)) or shape.input not in source:
        return None
    get = source.get
    # A plain non-negative int (what Bedrock sends) is taken as it is: count() is for anything else.
    n = get(shape.input)
    input_tokens = n if type(n) is int and n >= 0 else count(n)
    n = get(shape.output)
    output_tokens = n if type(n) is int and n >= 0 else count(n)
    n = get(shape.cache_read)
    cache_read = n if type(n) is int and n >= 0 else count(n)
    n = get(shape.cache_write)
    cache_write = n if type(n) is int and n >= 0 else count(n)
    one_hour = 0
    if cache_write and ("cacheDetails" in source or "cache_creation" in source):  # else it says nothing
        one_hour = min(one_hour_cache_writes(source), cache_write)
    return Usage(input_tokens, output_tokens, cache_read, cache_write, one_hour)


_new_tuple = tuple.__new__  # Usage(...) without the Python call namedtuple's __new__ is


def converse_usage(source: Any) -> Usage | None:
    """`read_usage(CONVERSE, source)`, quicker for what Bedrock sends: a dict of plain non-negative ints
    without cache writes (whose 1-hour part needs the general reading)."""
    if type(source) is dict:
        get = source.get
        i, o, r, w = (
            get("inputTokens"),
            get("outputTokens", 0),
            get("cacheReadInputTokens", 0),
            get("cacheWriteInputTokens", 0),
        )
        # (i | o | r) >= 0: the bitwise or of ints is negative when one of them is.
        if type(i) is int and type(o) is int and type(r) is int and w == 0 and type(w) is int and (i | o | r) >= 0:
            return _new_tuple(Usage, (i, o, r, 0, 0, "", False))
    return read_usage(CONVERSE, source)


def invoke_model_usage(headers: Mapping[str, Any], body: bytes) -> Usage | None:
    """InvokeModel: the Anthropic body `usage` (it has the cache counts) or else the token headers."""
    if body[:1] == b"{" and b'"usage"' in body:
        source = top_level_usage(body)
        if source is UNSURE:
            try:
                doc = json.loads(body)
            except ValueError:
                doc = None
            source = doc.get("usage") if isinstance(doc, dict) else None
        found = read_usage(ANTHROPIC, source)
        if found is not None:
            return found
    return read_usage(HEADERS, headers)


UNSURE: Any = object()  # top_level_usage could not tell without parsing the whole body
_decode = json.JSONDecoder().raw_decode


def top_level_usage(body: bytes) -> Any:
    """`json.loads(body)["usage"]` of a JSON object whose last member is `usage` (where Anthropic's Messages
    API writes it), parsing only that member: the answer's text can be long, and the guard parses it before
    the caller does. UNSURE when that is not so (the body is then parsed whole): the last `"usage"` in the
    body must be a key followed by its value and then only the closing brace, which a key nested deeper, or
    a key with members after it, is not (and a JSON string cannot hold an unescaped quote). Exact for any
    well-formed body (tests/unit/test_client_usage.py); of a malformed one it may read a usage that
    json.loads would have refused, where the headers were read before."""
    at = body.rfind(b'"usage"')
    if at < 0:
        return UNSURE
    try:
        text = body[at + 7 :].decode()
    except UnicodeDecodeError:
        return UNSURE
    colon = len(text) - len(text.lstrip())
    if text[colon : colon + 1] != ":":
        return UNSURE
    start = colon + 1
    start += len(text) - start - len(text[start:].lstrip())
    try:
        value, end = _decode(text, start)
    except ValueError:
        return UNSURE
    return value if text[end:].strip() == "}" else UNSURE


def estimate_input_tokens(operation: str, kwargs: Mapping[str, Any]) -> int:
    """A rough count for a stream abandoned before Bedrock said how many input tokens it read."""
    if operation == "converse_stream":
        parts = {k: kwargs.get(k) for k in ("messages", "system", "toolConfig") if kwargs.get(k)}
        text = json.dumps(parts, default=str, ensure_ascii=False)
    else:
        body = kwargs.get("body", b"")
        text = body.decode("utf-8", "replace") if isinstance(body, bytes | bytearray) else str(body)
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def with_tier(usage: Usage | None, tier: Any, latency: Any) -> Usage | None:
    """`usage` with the service tier and latency mode the response names (Converse `serviceTier` /
    `performanceConfig.latency`, InvokeModel `serviceTier` / `performanceConfigLatency`)."""
    if usage is None or (tier is None and latency is None):  # the usual response: standard tier, no latency mode
        return usage
    name, optimized = tier_name(tier), latency == "optimized"
    if not (name or optimized):
        return usage
    return usage._replace(service_tier=name, latency_optimized=optimized)


def request_id(resp: Mapping[str, Any]) -> str:
    """Bedrock's request id of a response (what the invocation log dedupes on); a made-up one, logged, when
    the response has none."""
    meta = resp.get("ResponseMetadata") or {}
    rid = meta.get("RequestId") or (meta.get("HTTPHeaders") or {}).get("x-amzn-requestid")
    if rid:
        return str(rid)
    logger.warning("guardrail: Bedrock response without a request id; it cannot dedupe with the invocation log")
    return f"client-{uuid.uuid4()}"
