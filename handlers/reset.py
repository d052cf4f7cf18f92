"""On-call reset: `{"scope": "global", "reason": "...", "actor": "..."}` plus optional re-arm options."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import ValidationError

from guardrail.core.errors import ScopeNotFound
from guardrail.service.observability import logger, metrics, tracer
from guardrail.service.oncall import ResetRequest, reset
from guardrail.service.runtime import default_runtime


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    try:
        request = ResetRequest.model_validate(event)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'event'}: {e['msg']}" for e in exc.errors())
        logger.warning("reset refused", extra={"error": problems})
        return {"ok": False, "error": f"reset refused: {problems}"}
    try:
        result = reset(default_runtime(), request)
    except ScopeNotFound as exc:  # malformed, ungoverned, a selector, or a scope that never existed
        logger.warning("reset refused", extra={"error": str(exc)})
        return {"ok": False, "error": str(exc)}
    logger.info("reset", extra={"scope": request.scope, "actor": request.actor, "result": result})
    return result
