"""What a Lambda cold start loads before its first usage event is handled (benchmarks/bench_cold_start.py
measures it): no effects machinery for an event that wins no transition; effects are still built, once,
the moment something needs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from guardrail.core.config import load_settings
from guardrail.service.runtime import build

ROOT = Path(__file__).resolve().parents[2]

FIRST_EVENT = """
import base64, gzip, json, sys
from botocore.awsrequest import AWSResponse

import handlers.usage
from guardrail.service.runtime import default_runtime

class Body:
    def __init__(self, data): self.data = data
    def stream(self, **_): yield self.data

def answer(request, **_):
    batch = b"BatchGetItem" in request.headers.get("X-Amz-Target", b"")
    return AWSResponse(request.url, 200, {}, Body(b'{"Responses": {}}' if batch else b"{}"))

default_runtime().client("dynamodb").meta.events.register("before-send.dynamodb.*", answer)
record = {"schemaType": "ModelInvocationLog", "timestamp": "2026-11-22T10:00:00Z", "requestId": "cold-1",
    "modelId": "us.anthropic.claude-sonnet-4-5-20250929-v1:0", "region": "us-east-1",
    "identity": {"arn": "arn:aws:sts::123456789012:assumed-role/app/x"},
    "input": {"inputTokenCount": 1200}, "output": {"outputTokenCount": 350}}
payload = {"messageType": "DATA_MESSAGE", "logEvents": [{"id": "1", "timestamp": 0, "message": json.dumps(record)}]}
event = {"awslogs": {"data": base64.b64encode(gzip.compress(json.dumps(payload).encode())).decode()}}

class Context:
    function_name = "guardrail-usage"; function_version = "$LATEST"; memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:guardrail-usage"
    aws_request_id = "cold"

sys.stdout = sys.stderr  # the metrics' EMF lines
result = handlers.usage.handler(event, Context())
print(json.dumps({"recorded": result["recorded"],
    "modules": sorted(m for m in sys.modules if m.startswith("guardrail."))}), file=sys.__stdout__)
"""

EFFECTS_MODULES = {
    "guardrail.service.effects",
    "guardrail.service.notify",
    "guardrail.service.holds",
    "guardrail.service.messages",
    "guardrail.service.role_deny",
    "guardrail.service.targets",
    "guardrail.service.target_kinds",
}


def test_the_first_usage_event_in_lambda_loads_no_effects() -> None:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "AWS_LAMBDA_FUNCTION_NAME": "guardrail-usage",
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.14",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "GUARDRAIL_TABLE_NAME": "t",
    }
    done = subprocess.run(
        [sys.executable, "-c", FIRST_EVENT], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["recorded"] == 1
    assert not EFFECTS_MODULES & set(seen["modules"])


def test_effects_are_built_once_when_first_needed_and_are_the_ones_the_engine_applies() -> None:
    runtime = build(load_settings(table_name="t"), clients={"dynamodb": object()})
    assert runtime.deferred_effects._effects is None
    effects = runtime.effects
    assert runtime.effects is effects
    assert runtime.engine.effects is runtime.deferred_effects
    assert runtime.deferred_effects.get() is effects
