"""Cold-start import time of each Lambda handler against a bare `import boto3`.

Each module is imported in a fresh interpreter under `python -X importtime`, several times. A run's
figure is the sum of the cumulative times of the top-level imports the statement caused (imports the
interpreter makes at startup, such as `site` and `encodings`, are not counted). The median over the
runs is compared with the median for `import boto3`. Target: every handler at most 2x boto3.

The environment matches a deployed function with tracing on and off: the Powertools Tracer (and with
it the X-Ray SDK) is built on the first invocation, not at import, so it is not part of these figures.

Run: python benchmarks/bench_import.py [--runs 7] [--check]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BASELINE = "boto3"
HANDLERS = ("handlers.usage", "handlers.alarm", "handlers.reset", "handlers.schedule")
TARGET_RATIO = 2.0
ENV = {
    "AWS_DEFAULT_REGION": "us-east-1",
    "POWERTOOLS_SERVICE_NAME": "bedrock-guardrail",
    "POWERTOOLS_METRICS_NAMESPACE": "BedrockGuardrail",
    "GUARDRAIL_TABLE_NAME": "bedrock-guardrail",
}


def top_level(stderr: str) -> dict[str, int]:
    """`import time: self | cumulative | name` lines with no indentation: name -> cumulative us."""
    out: dict[str, int] = {}
    for line in stderr.splitlines():
        if not line.startswith("import time:"):
            continue
        parts = line.removeprefix("import time:").split("|")
        if len(parts) != 3 or not parts[1].strip().isdigit():
            continue  # the header line
        name = parts[2]
        if name.startswith(" ") and not name.startswith("  "):  # one space: top level
            out[name.strip()] = int(parts[1])
    return out


def run(statement: str) -> dict[str, int]:
    env = {**os.environ, **ENV, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", statement],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        check=True,
    )
    return top_level(proc.stderr)


def import_ms(module: str, startup: set[str]) -> float:
    times = run(f"import {module}")
    return sum(us for name, us in times.items() if name not in startup) / 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--check", action="store_true", help="exit 1 when a handler is above the target")
    args = parser.parse_args()
    startup = set(run("pass"))
    modules = (BASELINE, *HANDLERS)
    samples: dict[str, list[float]] = {m: [] for m in modules}
    for _ in range(args.runs):  # interleaved, so a noisy moment hits every module alike
        for module in modules:
            samples[module].append(import_ms(module, startup))
    base = statistics.median(samples[BASELINE])
    print(f"cold-start import time, median of {args.runs} fresh interpreters (python -X importtime)")
    print(f"{'module':<20} {'median ms':>10} {'min ms':>8} {'x boto3':>8}")
    worst = 0.0
    for module in modules:
        med = statistics.median(samples[module])
        ratio = med / base
        if module != BASELINE:
            worst = max(worst, ratio)
        print(f"{module:<20} {med:>10.1f} {min(samples[module]):>8.1f} {ratio:>8.2f}")
    verdict = "OK" if worst <= TARGET_RATIO else "ABOVE TARGET"
    print(f"worst handler: {worst:.2f}x boto3 (target <= {TARGET_RATIO:.0f}x): {verdict}")
    return 1 if args.check and worst > TARGET_RATIO else 0


if __name__ == "__main__":
    raise SystemExit(main())
