"""Guarded streams: the caller iterates Bedrock's event stream unchanged while its usage is noted.

A stream reports exactly once: when it ends, or, when the caller stops early (break, exception,
close(), or dropping the stream), with the tokens it saw so far, marked partial.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from guardrail.client.usage import (
    ANTHROPIC,
    CHARS_PER_TOKEN,
    CONVERSE,
    INVOCATION_METRICS,
    INVOCATION_METRICS_KEY,
    Usage,
    count,
    estimate_input_tokens,
    read_usage,
    with_tier,
)

logger = logging.getLogger("guardrail.client")


class StreamTracker:
    """Usage seen on one stream; reports exactly once (complete, or partial when abandoned)."""

    def __init__(
        self,
        operation: str,
        kwargs: Mapping[str, Any],
        model_id: str,
        request_id: str,
        kind: str,
        on_finish: Callable[[Usage, bool], None],
    ) -> None:
        self.operation = operation
        self.kwargs = kwargs
        self.model_id = model_id
        self.on_finish = on_finish
        self.request_id = request_id
        self.kind = kind  # "converse" or "invoke"
        self.final: Usage | None = None
        self.started: Usage | None = None  # Anthropic message_start usage
        self.output_so_far = 0
        self.chars = 0
        self.deltas = 0
        self._done = False
        self._lock = threading.Lock()

    def see(self, event: Mapping[str, Any]) -> None:
        try:
            if self.kind == "converse":
                self._see_converse(event)
            else:
                self._see_invoke(event)
        except Exception:  # an event we do not understand must never break the caller's stream
            logger.debug("guardrail could not read a stream event", exc_info=True)

    def _see_converse(self, event: Mapping[str, Any]) -> None:
        if "contentBlockDelta" in event:
            delta = event["contentBlockDelta"].get("delta", {})
            self.deltas += 1
            text = delta.get("text") or (delta.get("toolUse") or {}).get("input") or ""
            reasoning = (delta.get("reasoningContent") or {}).get("text") or ""
            self.chars += len(text) + len(reasoning)
        elif "metadata" in event:
            meta = event["metadata"]
            usage = read_usage(CONVERSE, meta.get("usage"))
            self.final = with_tier(usage, meta.get("serviceTier"), (meta.get("performanceConfig") or {}).get("latency"))

    def _see_invoke(self, event: Mapping[str, Any]) -> None:
        chunk = event.get("chunk")
        if not chunk or "bytes" not in chunk:
            return
        doc = json.loads(chunk["bytes"])
        if not isinstance(doc, dict):
            return
        kind = doc.get("type")
        if kind == "message_start":
            self.started = read_usage(ANTHROPIC, (doc.get("message") or {}).get("usage"))
        elif kind == "content_block_delta":
            delta = doc.get("delta") or {}
            self.deltas += 1
            self.chars += len(delta.get("text") or delta.get("partial_json") or delta.get("thinking") or "")
        elif kind == "message_delta":
            self.output_so_far = max(self.output_so_far, count((doc.get("usage") or {}).get("output_tokens")))
        metrics = read_usage(INVOCATION_METRICS, doc.get(INVOCATION_METRICS_KEY))
        if metrics is not None:
            started = self.started
            if started is not None and not (metrics.cache_read_tokens or metrics.cache_write_tokens):
                metrics = Usage(
                    metrics.input_tokens,
                    metrics.output_tokens,
                    started.cache_read_tokens,
                    started.cache_write_tokens,
                    started.cache_write_1h_tokens,
                )
            self.final = metrics

    def usage(self) -> tuple[Usage, bool]:
        """(usage, partial)."""
        if self.final is not None:
            return self.final, False
        output = max(self.output_so_far, self.deltas, math.ceil(self.chars / CHARS_PER_TOKEN))
        started = self.started
        if started is not None:
            output = max(output, started.output_tokens)
            return Usage(started.input_tokens, output, started.cache_read_tokens, started.cache_write_tokens), True
        return Usage(estimate_input_tokens(self.operation, self.kwargs), output), True

    def finish(self) -> None:
        with self._lock:
            if self._done:
                return
            self._done = True
        usage, partial = self.usage()
        if partial:
            logger.warning(
                "guardrail: stream %s (%s) ended before its usage arrived; reporting the %d output tokens it "
                "saw, marked partial",
                self.request_id,
                self.model_id,
                usage.output_tokens,
            )
        self.on_finish(usage, partial)


class GuardedStream:
    """Iterates the wrapped event stream unchanged while noting its usage.

    Reports when the stream ends; when the caller stops early (break, exception, close(), or dropping
    the stream) it reports the tokens seen so far, marked partial, and closes the connection."""

    def __init__(self, inner: Any, tracker: StreamTracker) -> None:
        self._inner = inner
        self._tracker = tracker
        self._finalizer = weakref.finalize(self, _abandon, inner, tracker)

    def __iter__(self) -> Iterator[Any]:
        tracker = self._tracker
        finished = False
        try:
            for event in self._inner:
                tracker.see(event)
                yield event
            finished = True
        finally:
            tracker.finish()
            if not finished:
                _close(self._inner)

    def close(self) -> None:
        self._finalizer()

    def __enter__(self) -> GuardedStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def _abandon(inner: Any, tracker: StreamTracker) -> None:
    tracker.finish()
    _close(inner)


def _close(inner: Any) -> None:
    close = getattr(inner, "close", None)
    if close is not None:
        try:
            close()
        except Exception:
            logger.debug("closing an abandoned stream failed", exc_info=True)
