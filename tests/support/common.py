"""Constants and small helpers the suites share: the table name, sample events, a settable clock,
a Lambda context, and a capture of what the functions print and log."""

from __future__ import annotations

import io
import json
import logging
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

EVENTS = Path(__file__).resolve().parents[1] / "events"
TABLE = "guardrail-test"


def load_event(name: str) -> Any:
    """A sample event stored under tests/events/ (real shapes, see ../shared/events/)."""
    return json.loads((EVENTS / name).read_text())


class Clock:
    """A settable clock injected as `now` (engine, ledger, flags)."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


class FakeLambdaContext:
    function_name = "guardrail-test"
    function_version = "$LATEST"
    memory_limit_in_mb = 256
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:guardrail-test"
    aws_request_id = "test-request"
    log_group_name = "/aws/lambda/guardrail-test"
    log_stream_name = "test"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


class Output:
    """Everything the functions print (EMF metrics) and log (Powertools JSON lines)."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        from guardrail.service.observability import logger

        self.capsys = capsys
        self.logs = io.StringIO()
        self.handler = logging.StreamHandler(self.logs)
        self.handler.setFormatter(logger.registered_formatter)
        logger._logger.addHandler(self.handler)
        self.printed = ""

    def text(self) -> str:
        self.printed += self.capsys.readouterr().out
        return self.printed + self.logs.getvalue()

    def metric(self, name: str) -> float:
        """Sum of a metric over every EMF blob printed so far."""
        total = 0.0
        for line in self.text().splitlines():
            if not line.startswith("{") or "_aws" not in line:
                continue
            blob = json.loads(line)
            if name in blob:
                value = blob[name]
                total += sum(value) if isinstance(value, list) else value
        return total

    def log_lines(self, level: str) -> list[dict[str, Any]]:
        out = []
        for line in self.logs.getvalue().splitlines():
            entry = json.loads(line)
            if entry.get("level") == level:
                out.append(entry)
        return out

    def drain(self) -> str:
        """Everything printed and logged since the last drain."""
        out = self.capsys.readouterr()
        text = out.out + out.err + self.logs.getvalue()
        self.logs.seek(0)
        self.logs.truncate()
        return text
