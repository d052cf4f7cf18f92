"""CloudWatch alarm state changes (EventBridge, direct Lambda alarm action, or SNS) -> levels."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from guardrail.core.errors import AlarmEventError
from guardrail.service.alarms import apply_alarm, parse_alarm_events
from guardrail.service.observability import logger, metrics, tracer
from guardrail.service.runtime import default_runtime, settles


@settles
@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    runtime = default_runtime()
    try:
        changes = parse_alarm_events(event)
    except AlarmEventError as exc:
        logger.error("unrecognised alarm event: nothing changed", extra={"error": str(exc)})
        return {"changed": False, "results": [{"error": str(exc)}]}
    results = []
    for change in changes:
        results.append(apply_alarm(runtime.engine, runtime.settings.alarm_levels, change))
    for r in results:
        logger.info("alarm handled", extra=r)
    return {"changed": any(r["changed"] for r in results), "results": results}
