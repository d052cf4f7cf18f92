"""On-call reset: `{"scope": "global", "reason": "...", "actor": "..."}` plus optional re-arm options.

Two ways in. Through the function URL (AWS_IAM auth): the request is SigV4-signed, and the actor recorded is
the caller ARN AWS verified (`requestContext.authorizer.iam.userArn`); an `actor` in the body is only a note.
Invoked directly (`aws lambda invoke`): Lambda passes no caller identity, so the actor is recorded as
unverified and the claimed `actor` (required) as a note.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import ValidationError

from guardrail.core.errors import ResetRefused, ScopeNotFound
from guardrail.service.observability import logger, metrics, tracer
from guardrail.service.oncall import ResetRequest, reset
from guardrail.service.runtime import default_runtime, settles

UNVERIFIED = "unverified:direct-invoke"


@settles
@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if not isinstance(event, dict):
        return {"ok": False, "error": "reset refused: the event is not a JSON object"}
    if isinstance(event.get("requestContext"), dict) and "http" in event["requestContext"]:
        result = _reset(*_from_url(event))
        return {
            "statusCode": 200 if result["ok"] else 400,
            "headers": {"Content-Type": "application/json"},
            "body": json.dumps(result, default=str),
        }
    claim = event.get("actor")
    if not isinstance(claim, str) or not claim.strip():  # a direct invoke must say who asks (kept as a note)
        return {"ok": False, "error": "reset refused: actor: a direct invoke must name who asks (kept as a note)"}
    body = {k: v for k, v in event.items() if k != "actor"}
    body["note"] = f"claimed actor {claim.strip()}"
    return _reset(body, UNVERIFIED)


def _from_url(event: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    iam = ((event["requestContext"].get("authorizer") or {}).get("iam")) or {}
    verified = iam.get("userArn") if isinstance(iam.get("userArn"), str) else None
    raw = event.get("body") or "{}"
    try:
        text = base64.b64decode(raw).decode() if event.get("isBase64Encoded") else raw
        body = json.loads(text)
    except (ValueError, UnicodeDecodeError):
        return {"__invalid__": "the body is not JSON"}, verified
    if not isinstance(body, dict):
        return {"__invalid__": "the body is not a JSON object"}, verified
    claim = body.pop("actor", None)
    if isinstance(claim, str) and claim.strip():
        body["note"] = f"claimed actor {claim.strip()}"
    return body, verified


def _reset(body: dict[str, Any], actor: str | None) -> dict[str, Any]:
    if "__invalid__" in body:
        return {"ok": False, "error": f"reset refused: {body['__invalid__']}"}
    if not actor:  # the URL's AWS_IAM auth always sets it; never trust a request that lacks it
        return {"ok": False, "error": "reset refused: no verified caller identity in the request"}
    try:
        request = ResetRequest.model_validate({**body, "actor": actor})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'event'}: {e['msg']}" for e in exc.errors())
        logger.warning("reset refused", extra={"error": problems})
        return {"ok": False, "error": f"reset refused: {problems}"}
    try:
        result = reset(default_runtime(), request)
    except (ScopeNotFound, ResetRefused) as exc:  # malformed, ungoverned or unknown scope; a snooze too long
        logger.warning("reset refused", extra={"error": str(exc)})
        return {"ok": False, "error": str(exc)}
    logger.info("reset", extra={"scope": request.scope, "actor": request.actor, "note": request.note})
    return result
