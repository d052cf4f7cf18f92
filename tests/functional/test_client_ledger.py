"""A guarded client in ledger mode takes the usage function's whole path: a transition it wins is applied
at once (targets stopped, on-call told), not at the next schedule run."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from guardrail import GuardrailShutdown
from guardrail.client import ClientOptions, guard
from guardrail.core.models import Level
from tests.support.world import World

HAIKU_3 = "anthropic.claude-3-haiku-20240307-v1:0"  # 0.25 / 1.25 per 1M tokens: no cheaper model to switch to
MESSAGES = [{"role": "user", "content": [{"text": "Summarise the incident."}]}]


def converse_response(request_id: str) -> dict[str, Any]:
    # 1M input + 1M output tokens of Claude 3 Haiku: $0.25 + $1.25 = $1.50
    return {
        "output": {"message": {"role": "assistant", "content": [{"text": "done"}]}},
        "stopReason": "end_turn",
        "usage": {"inputTokens": 1_000_000, "outputTokens": 1_000_000, "totalTokens": 2_000_000},
        "metrics": {"latencyMs": 900},
        "ResponseMetadata": {"RequestId": request_id, "HTTPStatusCode": 200, "HTTPHeaders": {}},
    }


def test_ledger_mode_client_that_crosses_shutdown_stops_targets_and_alerts_without_a_schedule_run(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given thresholds $1 / $2 / $3 on the global scope, targets chat-api (reserved 7) and worker (none)
    monkeypatch.setenv("GUARDRAIL_THRESHOLDS", "alert=1,throttle=2,shutdown=3")
    bedrock = boto3.client("bedrock-runtime", region_name="us-east-1")
    stubber = Stubber(bedrock)
    for rid in ("req-1", "req-2"):
        stubber.add_response(
            "converse",
            converse_response(rid),
            {"modelId": HAIKU_3, "messages": MESSAGES, "requestMetadata": {"app": "chat-api"}},
        )
    stubber.activate()
    # And a guarded client that writes the ledger directly (built through the public guard())
    client = guard(
        bedrock,
        metadata={"app": "chat-api"},
        options=ClientOptions(report="ledger", background=False, flag_read_timeout=30.0),
    )

    # When two calls spend $3.00
    client.converse(modelId=HAIKU_3, messages=MESSAGES)  # type: ignore[arg-type]
    client.converse(modelId=HAIKU_3, messages=MESSAGES)  # type: ignore[arg-type]

    # Then the shutdown is applied at once: both targets at 0, the flag marked applied
    assert world.concurrency("chat-api") == 0 and world.concurrency("worker") == 0
    flag = world.flag()
    assert flag.level is Level.SHUTDOWN and flag.applied
    assert flag.targets["chat-api"].saved == 7 and flag.targets["worker"].saved is None
    # And on-call got exactly one SNS message per transition: ALERT, then SHUTDOWN
    messages = world.sns_messages()
    assert [m.splitlines()[0] for m in messages] == [
        "Bedrock guardrail: global moved to ALERT",
        "Bedrock guardrail: global moved to SHUTDOWN",
    ]
    assert "reserved concurrency 0 on chat-api (was 7)" in messages[1]
    # And the next call is refused without reaching Bedrock
    with pytest.raises(GuardrailShutdown):
        client.converse(modelId=HAIKU_3, messages=MESSAGES)  # type: ignore[arg-type]
    stubber.assert_no_pending_responses()


def test_importing_the_client_loads_neither_the_service_nor_the_tools() -> None:
    probe = (
        "import sys, guardrail.client\n"
        "print(sorted(m for m in sys.modules if m.startswith(('guardrail.service', 'guardrail.tools', 'handlers'))))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
