"""Record-to-shutdown critical path: AWS calls and the guardrail's own compute time.

Spend sits just below the $25 shutdown threshold. Cases: two target functions (one with reserved
concurrency 7, one with none), after a schedule run kept their readings (goal: at most 6 calls) and before
any schedule run (no kept reading: each target is read on the critical path); one target role (an IAM deny,
issue 18); both. One invocation-log batch
with the crossing record goes through the real usage handler on moto. We count every AWS call from the
handler's start to the last stop (PutFunctionConcurrency(0) or PutRolePolicy: the critical path), the calls
after it (notification), and split wall time into time inside AWS calls (SDK + moto) and the guardrail's
own compute (median, min and max over the warm runs).

Run: python benchmarks/bench_shutdown_path.py
"""

from __future__ import annotations

import io
import os
import statistics
import sys
import time
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "BedrockGuardrail")
os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")

import boto3

import handlers.schedule
import handlers.usage
from guardrail.service.runtime import default_runtime
from guardrail.store.table import create_table
from guardrail.tools.embedded_aws import embedded_aws
from tests.support.common import FakeLambdaContext
from tests.support.factories import log_line, logs_event, record


class CallLog:
    def __init__(self) -> None:
        self.calls: list[tuple[str, float, float]] = []  # (service.operation, start, end)
        self._start: dict[int, float] = {}

    def before(self, event_name: str, **kwargs: Any) -> None:
        self._start[id(kwargs.get("context"))] = time.perf_counter()

    def after(self, event_name: str, **kwargs: Any) -> None:
        started = self._start.pop(id(kwargs.get("context")), time.perf_counter())
        _, service, op = event_name.split(".", 2)
        self.calls.append((f"{service}.{op}", started, time.perf_counter()))


STOPS = ("lambda.PutFunctionConcurrency", "iam.PutRolePolicy")
# case -> (functions, role, a schedule run kept the targets' readings before the crossing, goal in calls)
CASES = {
    "2 functions": (True, False, True, 6),
    "2 functions, no kept reading (no schedule run yet)": (True, False, False, None),
    "1 role": (False, True, True, None),
    "2 functions + 1 role": (True, True, True, None),
}


def one_run(table: str, functions: bool = True, roles: bool = False, kept: bool = True) -> dict[str, Any]:
    session = boto3.session.Session(region_name="us-east-1")
    boto3.DEFAULT_SESSION = session
    log = CallLog()
    session.events.register("before-call.*.*", log.before)
    session.events.register("after-call.*.*", log.after)
    lam = session.client("lambda")
    iam = session.client("iam")
    role = iam.create_role(RoleName=f"r-{table}", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("h.py", "def handler(e, c):\n    return 1\n")
    for name, reserved in ((f"chat-{table}", 7), (f"worker-{table}", None)):
        lam.create_function(
            FunctionName=name, Runtime="python3.12", Role=role, Handler="h.handler", Code={"ZipFile": buf.getvalue()}
        )
        if reserved is not None:
            lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=reserved)
    topic = session.client("sns").create_topic(Name=f"alerts-{table}")["TopicArn"]
    create_table(session.client("dynamodb"), table)
    target_role = iam.create_role(RoleName=f"batch-{table}", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    os.environ.update(
        {
            "GUARDRAIL_TABLE_NAME": table,
            "GUARDRAIL_TOPIC_ARN": topic,
            "GUARDRAIL_TARGET_FUNCTIONS": f"chat-{table},worker-{table}" if functions else "",
            "GUARDRAIL_TARGET_ROLES": target_role if roles else "",
        }
    )
    default_runtime.cache_clear()
    ctx = FakeLambdaContext()
    now = datetime.now(UTC)
    # $24.75 of spend first (50 x $0.495): alert and throttle are behind us.
    prime = [log_line(record(f"p{i}", input_tokens=100_000, output_tokens=10_000, at=now)) for i in range(50)]
    handlers.usage.handler(logs_event(prime), ctx)  # type: ignore[arg-type]
    if kept:  # the periodic run (every 5 minutes by default) keeps each target's reading fresh
        handlers.schedule.handler({}, ctx)  # type: ignore[arg-type]
    crossing = logs_event([log_line(record("crossing", input_tokens=100_000, output_tokens=10_000, at=now))])
    log.calls.clear()
    start = time.perf_counter()
    result = handlers.usage.handler(crossing, ctx)  # type: ignore[arg-type]
    end = time.perf_counter()
    assert result["transitions"] == ["global: throttle -> shutdown"], result
    if functions:
        assert lam.get_function_concurrency(FunctionName=f"chat-{table}")["ReservedConcurrentExecutions"] == 0
    if roles:
        assert iam.list_role_policies(RoleName=f"batch-{table}")["PolicyNames"] == ["bedrock-cost-guardrail-deny"]
    calls = [c for c in log.calls if c[1] >= start and c[2] <= end]
    last_zero = max(i for i, c in enumerate(calls) if c[0] in STOPS)
    critical = calls[: last_zero + 1]
    critical_end = critical[-1][2]
    aws_time = sum(c[2] - c[1] for c in critical)
    return {
        "critical_calls": [c[0] for c in critical],
        "after_calls": [c[0] for c in calls[last_zero + 1 :]],
        "critical_wall_ms": (critical_end - start) * 1000,
        "critical_aws_ms": aws_time * 1000,
        "own_compute_ms": (critical_end - start - aws_time) * 1000,
        "total_ms": (end - start) * 1000,
    }


def _spread(runs: list[dict[str, Any]], key: str) -> str:
    values = [r[key] for r in runs]
    return f"{statistics.median(values):.2f} ms (min {min(values):.2f}, max {max(values):.2f})"


def main() -> None:
    with embedded_aws():
        for n, (case, (functions, roles, kept, goal)) in enumerate(CASES.items()):
            runs = [one_run(f"bench{n}{i}", functions, roles, kept) for i in range(7)]
            runs = runs[2:]  # the first runs warm imports and the price cache, as a warm Lambda would be
            first = runs[0]
            print(f"== {case}")
            calls = len(first["critical_calls"])
            target = "" if goal is None else f" (goal <= {goal}: {'MET' if calls <= goal else 'MISSED'})"
            print(f"critical path AWS calls (record -> last target stopped): {calls}{target}")
            for name in first["critical_calls"]:
                print(f"  {name}")
            print(f"after the shutdown (notification, not on the critical path): {first['after_calls']}")
            print(
                f"over {len(runs)} runs, median: guardrail's own compute {_spread(runs, 'own_compute_ms')}; "
                f"inside AWS calls (SDK + moto) {_spread(runs, 'critical_aws_ms')}; "
                f"critical path wall {_spread(runs, 'critical_wall_ms')}"
            )


if __name__ == "__main__":
    main()
