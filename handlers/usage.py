"""Usage ingest: CloudWatch Logs subscription events (Bedrock invocation logs) and the guarded client's
EventBridge usage events (`Bedrock Usage`, `Bedrock Usage Batch`, `Bedrock Usage Rows`)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from guardrail.service.ingest import ingest_events
from guardrail.service.observability import logger, metrics, record_ingest, tracer
from guardrail.service.runtime import default_runtime, settles


@settles
@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    runtime = default_runtime()
    # A ledger failure raises: the asynchronous invocation is retried, then lands in the DLQ. Nothing
    # of a failed chunk was counted, so a retry cannot double-count.
    result = ingest_events(runtime, [event])
    record_ingest(result)
    return {
        "recorded": len(result.recorded),
        "duplicates": len(result.duplicates),
        "corrected": len(result.corrected),  # a client copy replaced by the invocation log or a fuller report
        "superseded": len(result.superseded),  # conflicting copies inside this batch: the better one counted
        "quarantined": [q.reason for q in result.quarantined],
        "unknown_models": sorted(result.unknown_models),
        "failed_requests": len(result.failed),
        "not_token_priced": result.not_token_priced,
        "transitions": [
            f"{c.transition.scope}: {c.transition.from_level.label} -> {c.transition.to_level.label}"
            for c in result.transitions
        ],
        "spend": {scope: str(t.spend) for scope, t in result.totals.items()},
    }
