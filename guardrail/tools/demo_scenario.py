"""The demo's scripted world: who calls Bedrock when (a support agent that starts looping at 02:42 and is
fixed when on-call resets), the invocation-log lines and CloudWatch Logs events Bedrock would deliver for
those calls, the simulated clock and Lambda context the handlers run with, and the settings of the
embedded account (set for the demo, put back after it)."""

from __future__ import annotations

import base64
import contextlib
import gzip
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from guardrail.core.models import UsageRecord

SONNET = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
REGION = "us-east-1"
ACCOUNT = "123456789012"
TABLE = "guardrail-demo"
AGENT_FUNCTION = "support-agent"  # reserved concurrency 7
BATCH_FUNCTION = "summarizer"  # no reserved concurrency
OWN_FUNCTIONS = "guardrail-usage,guardrail-alarm,guardrail-reset,guardrail-schedule"
WEBHOOK = "https://hooks.slack.com/services/T0DEMO/B0DEMO/demo-not-a-secret"
ONCALL = f"arn:aws:sts::{ACCOUNT}:assumed-role/oncall/alice"
RESET_REASON = "support-agent loop fixed: max_steps=20 in v1.4.2"

TICK = timedelta(seconds=30)  # one log subscription delivery per tick
LOG_DELAY = timedelta(seconds=12)  # invocation logs reach CloudWatch Logs 5 to 30 s after the request
LOOP_START_TICK = 4  # 02:42
RESET_TICK = 48  # 03:04: on-call has read Slack and the status
LAST_TICK = 58  # 03:09


@dataclass(frozen=True)
class Call:
    """One Bedrock call an application tries to make."""

    app: str
    model_id: str
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int

    def record(self, request_id: str, at: datetime) -> UsageRecord:
        return UsageRecord(
            request_id=request_id,
            timestamp=at,
            model_id=self.model_id,
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            cache_read_tokens=self.cache_read_tokens,
            cache_write_tokens=self.cache_write_tokens,
            metadata={"app": self.app},
        )


def scripted_calls(tick: int, *, fixed_at: int | None = RESET_TICK) -> list[Call]:
    """What the applications try to call in one tick (before the guardrail has a say). The loop is fixed
    when on-call resets (`fixed_at`); without the guardrail nobody is alerted, so it never is (None)."""
    calls = [Call("chat-api", SONNET, 1500, 300, 6000, 0) for _ in range(3)]
    if tick >= LOOP_START_TICK and (fixed_at is None or tick < fixed_at):
        workers = 4 if tick < 10 else 8 if tick < 16 else 12  # the loop spawns sub-agents
        for _worker in range(workers):
            for k in range(5):  # one step every 6 s; each step re-reads the whole context from the cache
                step = (tick - LOOP_START_TICK) * 5 + k
                calls.append(Call(AGENT_FUNCTION, SONNET, 150, 600, min(20_000 + 3_000 * step, 150_000), 3_000))
    elif fixed_at is not None and tick >= fixed_at:  # fixed: a bounded agent again
        calls += [Call(AGENT_FUNCTION, SONNET, 150, 600, 20_000, 3_000) for _ in range(4)]
    return calls


def log_line(record: UsageRecord, function: str) -> str:
    """The ModelInvocationLog JSON Bedrock writes for a call."""
    return json.dumps(
        {
            "schemaType": "ModelInvocationLog",
            "schemaVersion": "1.0",
            "timestamp": record.timestamp.isoformat(),
            "accountId": ACCOUNT,
            "identity": {"arn": f"arn:aws:sts::{ACCOUNT}:assumed-role/{function}-role/{function}"},
            "region": REGION,
            "requestId": record.request_id,
            "operation": "Converse",
            "modelId": record.model_id,
            "input": {
                "inputContentType": "application/json",
                "inputTokenCount": record.input_tokens,
                "cacheReadInputTokenCount": record.cache_read_tokens,
                "cacheWriteInputTokenCount": record.cache_write_tokens,
            },
            "output": {"outputContentType": "application/json", "outputTokenCount": record.output_tokens},
            "requestMetadata": record.metadata,
        }
    )


def logs_event(lines: list[str], at: datetime) -> dict[str, Any]:
    """A CloudWatch Logs subscription event (gzip, base64) carrying invocation-log lines."""
    payload = {
        "messageType": "DATA_MESSAGE",
        "owner": ACCOUNT,
        "logGroup": "/aws/bedrock/modelinvocations",
        "logStream": "aws/bedrock/modelinvocations",
        "subscriptionFilters": ["guardrail-usage"],
        "logEvents": [
            {"id": str(i), "timestamp": int(at.timestamp() * 1000), "message": line} for i, line in enumerate(lines)
        ],
    }
    return {"awslogs": {"data": base64.b64encode(gzip.compress(json.dumps(payload).encode())).decode()}}


class LambdaContext:
    """The Lambda context the handlers' Powertools decorators read."""

    def __init__(self, name: str) -> None:
        self.function_name = name
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = 256
        self.invoked_function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"
        self.aws_request_id = "demo"
        self.log_group_name = f"/aws/lambda/{name}"
        self.log_stream_name = "demo"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


class SimClock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


# -- the world ---------------------------------------------------------------------------------------


@contextlib.contextmanager
def demo_environment(topic: str, secret: str) -> Iterator[None]:
    values = {
        "GUARDRAIL_TABLE_NAME": TABLE,
        "GUARDRAIL_TOPIC_ARN": topic,
        "GUARDRAIL_SLACK_SECRET_ARN": secret,
        "GUARDRAIL_TARGET_FUNCTIONS": f"{AGENT_FUNCTION},{BATCH_FUNCTION}",
        "GUARDRAIL_OWN_FUNCTIONS": OWN_FUNCTIONS,
        "GUARDRAIL_THRESHOLDS": "alert=5,throttle=10,shutdown=25",
        "GUARDRAIL_WINDOW": "day",
        "GUARDRAIL_TIMEZONE": "UTC",
        "GUARDRAIL_MODE": "enforce",
    }
    cleared = [k for k in os.environ if k.startswith("GUARDRAIL_") and k not in values]
    saved = {k: os.environ.get(k) for k in [*values, *cleared]}
    for k in cleared:
        del os.environ[k]
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def concurrency(lam: Any, name: str) -> int | str | None:
    """A target's reserved concurrency as status shows it (N, "none"), read through the one adapter."""
    from guardrail.service.targets import Concurrency

    return Concurrency(lambda: lam).read(name).for_json()


@contextlib.contextmanager
def quiet_powertools() -> Iterator[None]:
    """The handlers log JSON and print EMF metrics to stdout, as in Lambda; the demo shows its own view."""
    import logging
    import warnings

    from guardrail.service.observability import logger

    level = logger.log_level
    logger.setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)
