"""Reset from Slack: the Slack app's interactivity Request URL (a Lambda function URL, auth NONE).

Slack signs every request with the app's signing secret; guardrail.service.slack_reset verifies that
signature, the timestamp and that the request is new before anything else. The answer is Slack's: 200
(with a dialog error when the reset was refused), 401 for a request that is not Slack's or not fresh.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from guardrail.service.observability import logger, metrics, tracer
from guardrail.service.runtime import settles
from guardrail.service.slack_reset import Refused, default_slack_reset


@settles
@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    headers = event.get("headers") if isinstance(event, dict) else None
    raw = event.get("body") if isinstance(event, dict) else None
    try:
        if not isinstance(headers, dict) or not isinstance(raw, str):
            raise Refused(400, "not a function URL request with a body")
        try:
            body = base64.b64decode(raw, validate=True).decode() if event.get("isBase64Encoded") else raw
        except (binascii.Error, UnicodeDecodeError):
            raise Refused(400, "the body is not base64 text") from None
        response = default_slack_reset().handle(headers, body)
    except Refused as exc:
        logger.warning("Slack request refused", extra={"status": exc.status, "why": exc.why})
        metrics.add_metric(name="SlackRequestsRefused", unit=MetricUnit.Count, value=1)
        return {"statusCode": exc.status, "headers": {"Content-Type": "text/plain"}, "body": "refused"}
    if response.body is None:
        return {"statusCode": response.status, "body": ""}
    return {
        "statusCode": response.status,
        "headers": {"Content-Type": "application/json"},
        "body": json.dumps(response.body),
    }
