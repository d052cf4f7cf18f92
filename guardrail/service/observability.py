"""Powertools Logger, Tracer and Metrics: created once, here, for every entry point.

Metrics (EMF, namespace from POWERTOOLS_METRICS_NAMESPACE, default BedrockGuardrail):
RecordsIngested, RecordsQuarantined, DuplicatesDropped, UnknownModelRecords, SpendUSD (dimension scope),
Level (dimension scope, 0..3), Transitions, EffectsApplied, EffectsFailed, NotificationsFailed,
UntrackedSpendUSD.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger, Metrics, single_metric
from aws_lambda_powertools.metrics import MetricUnit

if TYPE_CHECKING:
    from aws_lambda_powertools import Tracer

    from guardrail.service.effects import EffectReport
    from guardrail.service.engine import IngestResult

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME", "bedrock-guardrail")
NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "BedrockGuardrail")


Handler = Callable[[Any, Any], Any]
# What the functions call out with: AWS through botocore, Slack webhooks through urllib (httplib). The
# Tracer's default patches every library the X-Ray SDK knows, importing each one it finds: more cold start.
TRACED_MODULES = ("botocore", "httplib")


class LazyTracer:
    """Powertools Tracer, built on the first invocation instead of at import.

    Building a Tracer imports the X-Ray SDK (and patches what it traces: TRACED_MODULES) even when
    tracing is off. Deferring it keeps handler import time (cold start init) small; when tracing is disabled
    (POWERTOOLS_TRACE_DISABLED, or outside Lambda) it is never built at all. Botocore is patched when
    the Tracer is built, which is before the first AWS client is created (clients are lazy too).
    """

    def __init__(self, service: str) -> None:
        self.service = service
        self._tracer: Tracer | None = None

    @property
    def enabled(self) -> bool:
        from aws_lambda_powertools.tracing.tracer import Tracer as _Tracer

        return not _Tracer._is_tracer_disabled()

    def get(self) -> Tracer:
        if self._tracer is None:
            from aws_lambda_powertools import Tracer as _Tracer

            self._tracer = _Tracer(service=self.service, patch_modules=TRACED_MODULES)
        return self._tracer

    def capture_lambda_handler(self, *, capture_response: bool = False) -> Callable[[Handler], Handler]:
        def decorate(handler: Handler) -> Handler:
            wrapped: list[Handler] = []

            @functools.wraps(handler)
            def run(event: Any, context: Any) -> Any:
                if not wrapped:
                    if self.enabled:
                        traced = self.get().capture_lambda_handler(handler, capture_response=capture_response)
                        wrapped.append(traced)
                    else:
                        wrapped.append(handler)
                return wrapped[0](event, context)

            return run

        return decorate


logger = Logger(service=SERVICE)
tracer = LazyTracer(SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)


def scoped_metric(name: str, value: float, scope: str, unit: MetricUnit = MetricUnit.Count) -> None:
    """A metric with a `scope` dimension (its own EMF blob, so it does not leak onto the others)."""
    with single_metric(
        name=name, unit=unit, value=value, namespace=NAMESPACE, default_dimensions={"service": SERVICE}
    ) as metric:
        metric.add_dimension(name="scope", value=scope)


def record_ingest(result: IngestResult) -> None:
    metrics.add_metric(name="RecordsIngested", unit=MetricUnit.Count, value=len(result.recorded))
    metrics.add_metric(name="RecordsQuarantined", unit=MetricUnit.Count, value=len(result.quarantined))
    metrics.add_metric(name="DuplicatesDropped", unit=MetricUnit.Count, value=len(result.duplicates))
    metrics.add_metric(name="CopiesCorrected", unit=MetricUnit.Count, value=len(result.corrected))
    metrics.add_metric(name="CopiesSuperseded", unit=MetricUnit.Count, value=len(result.superseded))
    if result.superseded:  # conflicting copies in one batch: the better one counted, the others are on record
        logger.warning(
            "conflicting copies of a request in one batch; the authoritative or fuller one counted",
            extra={"request_ids": result.superseded[:50], "count": len(result.superseded)},
        )
    unknown = sum(1 for p in result.recorded if p.price.at_ceiling)
    metrics.add_metric(name="UnknownModelRecords", unit=MetricUnit.Count, value=unknown)
    metrics.add_metric(name="Transitions", unit=MetricUnit.Count, value=len(result.transitions))
    metrics.add_metric(name="FailedRequests", unit=MetricUnit.Count, value=len(result.failed))
    not_token = sum(result.not_token_priced.values())
    metrics.add_metric(name="NotTokenPricedRecords", unit=MetricUnit.Count, value=not_token)
    if result.not_token_priced:
        logger.warning(
            "requests billed per image, per second or by the hour: counted, their cost is not per token ($0 here)",
            extra={"models": result.not_token_priced},
        )
    for scope, totals in result.totals.items():
        scoped_metric("SpendUSD", float(totals.spend.quantize(Decimal("0.000001"))), scope, MetricUnit.NoUnit)
    for committed in result.transitions:
        scoped_metric("Level", int(committed.transition.to_level), committed.transition.scope, MetricUnit.NoUnit)
    for q in result.quarantined:
        logger.warning("quarantined record", extra={"reason": q.reason, "source": q.source})
    if result.unknown_models:
        logger.error(
            "unknown models priced at the ceiling rate; add a price override",
            extra={"models": sorted(result.unknown_models)},
        )


def record_effects(report: EffectReport) -> None:
    metrics.add_metric(name="EffectsApplied", unit=MetricUnit.Count, value=report.applied)
    metrics.add_metric(name="EffectsFailed", unit=MetricUnit.Count, value=len(report.failures))
    metrics.add_metric(name="NotificationsFailed", unit=MetricUnit.Count, value=len(report.notification_failures))
    log = logger.error if report.failures or report.notification_failures else logger.info
    log(
        "effects",
        extra={
            "scope": report.scope,
            "level": report.level.label,
            "actions": report.actions,
            "failures": report.failures,
            "notification_failures": report.notification_failures,
        },
    )
