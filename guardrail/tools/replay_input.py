"""What `guardrail replay` reads: exported invocation-log lines, numbered (quarantine messages name the line),
parsed into records, and put in time order within a bounded buffer; and, when a file gives no record at
all, why (an empty file, a JSON array, a binary file) and what to do."""

from __future__ import annotations

import contextlib
import gzip
import heapq
import io
import json
import sys
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from guardrail.core.models import UsageRecord
from guardrail.service.sources import ParseResult, RecordParser

if TYPE_CHECKING:
    from guardrail.tools.replay import ReplayReport

QUARANTINE_EXAMPLES = 5
# S3 deliveries and log exports interleave a little; sorting within this many records keeps memory bounded.
REORDER_BUFFER = 10_000


# -- reading ----------------------------------------------------------------------------------------


def open_lines(path: str | Path, stdin: BinaryIO | None = None) -> Iterator[tuple[int, str]]:
    """(line number, line) of a file's non-blank lines (gzip detected by its magic bytes), streamed.
    `-` reads standard input."""
    with contextlib.ExitStack() as stack:
        raw: BinaryIO
        if str(path) == "-":
            raw = stdin if stdin is not None else sys.stdin.buffer
        else:
            raw = stack.enter_context(open(path, "rb"))
        if isinstance(raw, io.BufferedReader):
            magic = raw.peek(2)[:2]
        else:
            magic = raw.read(2)
            raw.seek(0)
        stream: BinaryIO | gzip.GzipFile = gzip.GzipFile(fileobj=raw) if magic == b"\x1f\x8b" else raw
        for number, line in enumerate(io.TextIOWrapper(stream, encoding="utf-8", errors="replace"), start=1):
            line = line.strip()
            if line:
                yield number, line


def record_text(line: str) -> str:
    """The ModelInvocationLog JSON inside one exported line (see the module docstring for the shapes)."""
    if not line.startswith("{"):
        _, _, rest = line.partition(" ")  # "<timestamp> <record>" from a CloudWatch Logs export
        return rest.strip() or line
    if '"message"' in line[:200] or line.startswith('{"timestamp"') or '"ingestionTime"' in line:
        try:
            data = json.loads(line)
        except ValueError:
            return line
        if isinstance(data, dict) and isinstance(data.get("message"), str) and "requestId" not in data:
            return str(data["message"])
    return line


def parse_lines(lines: Iterable[tuple[int, str]], parser: RecordParser, report: ReplayReport) -> Iterator[UsageRecord]:
    for number, line in lines:
        report.lines += 1
        report.first_line = report.first_line or line[:200]
        result = ParseResult()
        parser.invocation_log_line(record_text(line), result, source="replay")
        for q in result.quarantined:
            report.quarantined += 1
            if len(report.quarantine_examples) < QUARANTINE_EXAMPLES:
                report.quarantine_examples.append(f"line {number}: {q.reason}")
        yield from result.records


def in_time_order(records: Iterable[UsageRecord], report: ReplayReport) -> Iterator[UsageRecord]:
    """Records sorted by time within REORDER_BUFFER; one that comes later than that is counted."""
    report.reorder_buffer = REORDER_BUFFER
    heap: list[tuple[datetime, int, UsageRecord]] = []
    newest: datetime | None = None
    for seq, record in enumerate(records):
        heapq.heappush(heap, (record.timestamp, seq, record))
        if len(heap) > REORDER_BUFFER:
            at, _, oldest = heapq.heappop(heap)
            if newest is not None and at < newest:
                report.out_of_order += 1
            newest = at if newest is None else max(newest, at)
            yield oldest
    while heap:
        yield heapq.heappop(heap)[2]


def no_records_hint(report: ReplayReport) -> str:
    """Why a file gave no record, and what to do: reading nothing is an error, not a $0.00 report."""
    source, first = ("standard input" if report.source == "-" else report.source), report.first_line
    if report.lines == 0:
        return f"{source} is empty: no record to replay"
    if first.startswith("["):
        return (
            f"{source} is a JSON array, not JSON lines: write one record per line, e.g. "
            f"`jq -c '.[]' {source} > records.jsonl` (README: Replay)"
        )
    if "\ufffd" in first or "\x00" in first:
        return f"{source} is not text (binary?): replay reads JSON lines of invocation-log records, gzip or not"
    example = f" ({report.quarantine_examples[0]})" if report.quarantine_examples else ""
    return (
        f"no invocation-log record in {source}: all {report.lines:,} lines were quarantined{example}; "
        "replay reads JSON lines of invocation-log records, CloudWatch Logs events or a CloudWatch Logs export"
    )
