"""Cold start as Lambda pays it: process start to the first handled event, against a bare `import boto3`.

Each run is a fresh interpreter. The handler run imports the usage handler and handles one invocation-log
subscription event (10 records): the import, the runtime (settings, DynamoDB client), genai-prices' import
and first lookup, the log record models, the ledger write and the consistent read, with botocore's full
pipeline and only the HTTP send replaced (an empty success). The baseline imports boto3 and does nothing
else. Both are measured as the child's own CPU time (user + system) from its start to the end of its work
(the handler's return; boto3 imported), as the child reads it there: Lambda never pays the interpreter's
exit on a cold start, and that exit is not alike (the bare process collects its heap at exit, about
40 ms here; the handler's is frozen after its first event, about 15 ms). The whole process's CPU is
printed too. Median of 7 interleaved runs with min and max. Goal: the handler at most 2x the baseline.

The handler runs twice per round: with the package's bytecode (`__pycache__`, written by one untimed run),
and from the function asset as the CDK app bundles it on this machine (`cdk/guardrail_cdk/asset_files.py`):
with bytecode only when a Python of the Lambda runtime's version is here to compile it, else source only,
so every module of ours compiles at cold start (dependencies keep their installed bytecode in both; in
Lambda the layer's are compiled by the same rule). The environment is the Lambda runtime's
(`AWS_EXECUTION_ENV`, X-Ray tracing active, the function's variables).

Run: python benchmarks/bench_cold_start.py [--runs 7]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "cdk"))
from guardrail_cdk import asset_files  # noqa: E402  (plain files, no CDK: what the function asset holds)

GOAL_RATIO = 2.0
ENV = {
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_LAMBDA_FUNCTION_NAME": "guardrail-usage",
    "AWS_EXECUTION_ENV": "AWS_Lambda_python3.14",  # what the Lambda runtime sets (handlers/__init__.py reads it)
    # The functions run with X-Ray tracing active (Tracing.ACTIVE): in Lambda the first event builds the
    # Powertools Tracer, importing the X-Ray SDK and patching botocore. Segments go to a daemon address
    # nobody listens on here (UDP), as cheaply as in Lambda.
    "LAMBDA_TASK_ROOT": "/var/task",
    "_X_AMZN_TRACE_ID": "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
    "AWS_XRAY_DAEMON_ADDRESS": "127.0.0.1:2000",
    "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR",
    "POWERTOOLS_SERVICE_NAME": "bedrock-guardrail",
    "POWERTOOLS_METRICS_NAMESPACE": "BedrockGuardrail",
    "GUARDRAIL_TABLE_NAME": "bedrock-guardrail",
}
BASELINE = "import boto3"
# Appended to each child: its CPU time so far, read when its work is done (before the interpreter's exit).
REPORT = """
import resource as _r, sys as _s
_u = _r.getrusage(_r.RUSAGE_SELF)
_s.stderr.write(f"\\nCPU={_u.ru_utime + _u.ru_stime!r}\\n")
"""
FIRST_EVENT = """
import base64, gzip, json, os, sys
sys.stdout = open(os.devnull, "w")
import handlers.usage
from botocore.awsrequest import AWSResponse
from guardrail.service.runtime import default_runtime

class Body:
    def __init__(self, data): self.data = data
    def stream(self, **_): yield self.data

def answer(request, **_):
    target = request.headers.get("X-Amz-Target", b"")
    body = b'{"Responses": {}, "UnprocessedKeys": {}}' if b"BatchGetItem" in target else b"{}"
    return AWSResponse(request.url, 200, {}, Body(body))

default_runtime().client("dynamodb").meta.events.register("before-send.dynamodb.*", answer)
records = [{
    "schemaType": "ModelInvocationLog", "timestamp": "2026-11-22T10:00:00Z", "requestId": f"cold-{i}",
    "modelId": "us.anthropic.claude-sonnet-4-5-20250929-v1:0", "region": "us-east-1",
    "identity": {"arn": "arn:aws:sts::123456789012:assumed-role/app/x"},
    "input": {"inputTokenCount": 1200, "cacheReadInputTokenCount": 8000}, "output": {"outputTokenCount": 350},
} for i in range(10)]
payload = {"messageType": "DATA_MESSAGE", "owner": "123456789012", "logGroup": "/aws/bedrock/modelinvocations",
    "logStream": "s", "subscriptionFilters": ["guardrail"], "logEvents": [
    {"id": str(i), "timestamp": 0, "message": json.dumps(r)} for i, r in enumerate(records)]}
event = {"awslogs": {"data": base64.b64encode(gzip.compress(json.dumps(payload).encode())).decode()}}

class Context:
    function_name = "guardrail-usage"; function_version = "$LATEST"; memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:guardrail-usage"
    aws_request_id = "cold"

result = handlers.usage.handler(event, Context())
assert result["recorded"] == 10, result
assert "aws_xray_sdk" in sys.modules  # traced, as the deployed functions are
"""


def cpu_of(code: str, path: Path = ROOT, *, bytecode: bool = True) -> tuple[float, float]:
    """CPU seconds (user + system) of one fresh interpreter running `code` with `path` first on sys.path:
    to the end of `code`, and of the whole process (its exit included)."""
    env = {**os.environ, **ENV, "PYTHONPATH": str(path)}
    if bytecode:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
    else:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(
        [sys.executable, "-c", code + REPORT],
        cwd=path,
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    at_end = float(done.stderr.rsplit("CPU=", 1)[1])
    return at_end, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def line(label: str, runs: list[tuple[float, float]]) -> str:
    values, whole = [r[0] for r in runs], [r[1] for r in runs]
    median = statistics.median(values) * 1000
    return (
        f"  {label:<48} {median:7.1f} ms  ({min(values) * 1000:.1f}, {max(values) * 1000:.1f})"
        f"   whole process {statistics.median(whole) * 1000:.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description="cold start to the first handled event")
    parser.add_argument("--runs", type=int, default=7)
    runs = parser.parse_args().runs
    cpu_of(FIRST_EVENT)  # writes the package's bytecode once (untimed), as a deployment could ship it
    base: list[tuple[float, float]] = []
    first: list[tuple[float, float]] = []
    source: list[tuple[float, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        asset = Path(tmp)
        python = asset_files.runtime_python()
        compiled = asset_files.write_function_code(asset, python=python)
        # Bytecode is per interpreter version: this run reads it only if it is the runtime's Python.
        shipped = "as shipped, with bytecode" if compiled and python == sys.executable else "as shipped: source only"
        for _ in range(runs):  # interleaved: load on the shared machine hits all three alike
            base.append(cpu_of(BASELINE))
            first.append(cpu_of(FIRST_EVENT))
            source.append(cpu_of(FIRST_EVENT, asset, bytecode=False))  # never writes into the asset
    print(f"process start -> first handled usage event (CPU to the end of the work, median of {runs}; min, max):")
    print(line("bare `import boto3`", base))
    print(line("usage handler, event (bytecode)", first))
    print(line(f"usage handler, event ({shipped})", source))
    for label, values in (("bytecode", first), (shipped, source)):
        ratio = statistics.median(v for v, _ in values) / statistics.median(v for v, _ in base)
        verdict = "meets" if ratio <= GOAL_RATIO else "MISSES"
        print(f"  {label}: ratio {ratio:.2f}x; goal <= {GOAL_RATIO:.0f}x: {verdict}")


if __name__ == "__main__":
    main()
