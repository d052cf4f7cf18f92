"""EventBridge schedule: window rollover, drift repair and reconciliation."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from guardrail.service import schedule
from guardrail.service.observability import logger, metrics, tracer
from guardrail.service.runtime import default_runtime, settles


@settles
@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    runtime = default_runtime()
    report = schedule.run(runtime.engine, runtime.effects, runtime.client("cloudwatch"))
    metrics.add_metric(name="DriftRepaired", unit=MetricUnit.Count, value=len(report.repaired))
    if "gap_usd" in report.reconciliation:
        gap = max(0.0, float(report.reconciliation["gap_usd"]))
        metrics.add_metric(name="UntrackedSpendUSD", unit=MetricUnit.NoUnit, value=gap)
    (logger.error if report.failures else logger.info)("schedule run", extra=asdict(report))
    return asdict(report)
