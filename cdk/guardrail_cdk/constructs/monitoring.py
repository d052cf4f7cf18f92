"""Monitoring: CloudWatch alarms (to the alert topic) and the dashboard.

Metrics the handlers emit (namespace `BedrockGuardrail`, Powertools adds dimension `service`):
- `SpendUSD` {service, scope}: the scope's spend so far in its current window, after each write (a gauge;
  alarms take the Maximum per minute).
- `Level` {service, scope}: the scope's level after each evaluation, 0 normal .. 3 shutdown.
- `RecordsIngested`, `RecordsQuarantined`, `DuplicatesDropped`, `EffectsApplied`, `EffectsFailed`
  {service}: counts (Sum).
Tokens per model come from Bedrock's own `AWS/Bedrock` metrics (dimension `ModelId`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from constructs import Construct

from guardrail.core.config import Settings
from guardrail.core.models import ESCALATION_LEVELS, Budget
from guardrail_cdk.constructs.alerting import Alerting
from guardrail_cdk.constructs.function import GuardrailFunction
from guardrail_cdk.constructs.ingest import Ingest
from guardrail_cdk.props import METRICS_NAMESPACE, GuardrailProps

MINUTE = Duration.minutes(1)
FIVE_MINUTES = Duration.minutes(5)
LEVEL_COLORS = {"alert": "#ff9900", "throttle": "#d62728", "shutdown": "#7f0000"}


class Monitoring(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        props: GuardrailProps,
        settings: Settings,
        ingest: Ingest,
        functions: Sequence[GuardrailFunction],
        alerting: Alerting,
    ) -> None:
        super().__init__(scope, construct_id)
        self.prefix = props.name_prefix
        self.service = props.service_name
        self.action = cw_actions.SnsAction(alerting.topic)
        self.alarms: list[cw.Alarm] = []

        # Spend per level, for every budget whose scope is known at synth (not `<key>:*`).
        self.spend_alarms: dict[tuple[str, str], cw.Alarm] = {}
        budgets = [b for b in settings.budget_list() if "*" not in b.selector]
        for budget in budgets:
            for level in ESCALATION_LEVELS:
                threshold = budget.thresholds.for_level(level)
                alarm = self._alarm(
                    f"Spend{_id(budget.selector)}{level.label.capitalize()}",
                    name=f"spend-{_slug(budget.selector)}-{level.label}",
                    description=f"Guardrail spend of scope {budget.selector} reached the {level.label} "
                    f"threshold ({threshold} USD per {budget.window}).",
                    metric=self.metric("SpendUSD", "Maximum", MINUTE, scope=budget.selector),
                    threshold=float(threshold),
                )
                self.spend_alarms[(budget.selector, level.label)] = alarm

        # Ingest health: the usage function must never fail or be throttled silently.
        usage = ingest.usage
        self.ingest_alarms = {
            "errors": self._alarm(
                "IngestErrors",
                name="ingest-errors",
                description="The usage function failed; spend may be unmetered until it recovers.",
                metric=usage.function.metric_errors(period=FIVE_MINUTES, statistic="Sum"),
            ),
            "throttles": self._alarm(
                "IngestThrottles",
                name="ingest-throttles",
                description="The usage function was throttled; spend is metered late or not at all.",
                metric=usage.function.metric_throttles(period=FIVE_MINUTES, statistic="Sum"),
            ),
            "subscription": self._alarm(
                "InvocationLogSubscriptionErrors",
                name="ingest-subscription-errors",
                description="CloudWatch Logs could not deliver invocation logs to the usage function.",
                metric=cw.Metric(
                    namespace="AWS/Logs",
                    metric_name="DeliveryErrors",
                    dimensions_map={
                        "LogGroupName": ingest.log_group_name,
                        "DestinationType": "Lambda",
                        "FilterName": ingest.subscription_filter_name,
                    },
                    statistic="Sum",
                    period=FIVE_MINUTES,
                ),
            ),
            "bedrock-delivery": self._alarm(
                "BedrockLogDeliveryFailures",
                name="bedrock-log-delivery-failures",
                description="Bedrock could not deliver model invocation logs to CloudWatch Logs.",
                metric=cw.Metric(
                    namespace="AWS/Bedrock",
                    metric_name="ModelInvocationLogsCloudWatchDeliveryFailure",
                    statistic="Sum",
                    period=FIVE_MINUTES,
                ),
            ),
        }
        self.failure_queue_alarms: dict[str, cw.Alarm] = {}
        providers = [ingest.provider] if ingest.provider else []
        for fn in [usage, *functions, *providers]:
            role = fn.node.id.lower()
            self.failure_queue_alarms[role] = self._alarm(
                f"{role.capitalize()}FailureQueueDepth",
                name=f"{role}-failure-queue",
                description=f"Events the {role} function could not process are waiting in its failure queue.",
                metric=fn.failure_queue.metric_approximate_number_of_messages_visible(
                    period=FIVE_MINUTES, statistic="Maximum"
                ),
            )
            if fn is not usage and fn not in providers:
                self._alarm(
                    f"{role.capitalize()}Errors",
                    name=f"{role}-errors",
                    description=f"The {role} function failed.",
                    metric=fn.function.metric_errors(period=FIVE_MINUTES, statistic="Sum"),
                )
        self.effects_failed = self._alarm(
            "EffectsFailed",
            name="effects-failed",
            description="An effect (notification, downgrade, concurrency change or restore) failed.",
            metric=self.metric("EffectsFailed", "Sum", FIVE_MINUTES),
        )

        self.dashboard = self._dashboard(budgets, [usage, *functions])

    # -- helpers ---------------------------------------------------------------------------------

    def metric(self, name: str, statistic: str, period: Duration, **dimensions: str) -> cw.Metric:
        return cw.Metric(
            namespace=METRICS_NAMESPACE,
            metric_name=name,
            dimensions_map={"service": self.service, **dimensions},
            statistic=statistic,
            period=period,
        )

    def _alarm(
        self, construct_id: str, *, name: str, description: str, metric: cw.IMetric, threshold: float = 1
    ) -> cw.Alarm:
        alarm = cw.Alarm(
            self,
            construct_id,
            alarm_name=f"{self.prefix}-{name}",
            alarm_description=description,
            metric=metric,
            threshold=threshold,
            comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            evaluation_periods=1,
            treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
        )
        alarm.add_alarm_action(self.action)
        self.alarms.append(alarm)
        return alarm

    def _search(
        self, metric: str, statistic: str, label: str, *dims: str, namespace: str = METRICS_NAMESPACE
    ) -> cw.MathExpression:
        schema = ",".join((namespace, *dims))
        where = f' service="{self.service}"' if namespace == METRICS_NAMESPACE else ""
        return cw.MathExpression(
            expression=f"SEARCH('{{{schema}}} MetricName=\"{metric}\"{where}', '{statistic}', 60)",
            using_metrics={},
            label=label,
            period=MINUTE,
        )

    def _dashboard(self, budgets: Sequence[Budget], functions: Sequence[GuardrailFunction]) -> cw.Dashboard:
        dashboard = cw.Dashboard(self, "Dashboard", dashboard_name=self.prefix, default_interval=Duration.hours(6))
        spend = []
        for budget in budgets:
            thresholds, selector = budget.thresholds, budget.selector
            spend.append(
                cw.GraphWidget(
                    title=f"Spend {selector} (USD, {budget.window} to date) vs thresholds",
                    left=[self.metric("SpendUSD", "Maximum", MINUTE, scope=selector)],
                    left_annotations=[
                        cw.HorizontalAnnotation(
                            value=float(thresholds.for_level(level)), label=level.label, color=LEVEL_COLORS[level.label]
                        )
                        for level in ESCALATION_LEVELS
                    ],
                    width=12,
                )
            )
        spend.append(
            cw.GraphWidget(
                title="Spend per scope (USD, window to date)",
                left=[self._search("SpendUSD", "Maximum", "", "scope", "service")],
                width=12,
            )
        )
        dashboard.add_widgets(*spend)
        dashboard.add_widgets(
            cw.GraphWidget(
                title="Level per scope (0 normal, 1 alert, 2 throttle, 3 shutdown)",
                left=[self._search("Level", "Maximum", "", "scope", "service")],
                left_y_axis=cw.YAxisProps(min=0, max=3),
                width=12,
            ),
            cw.GraphWidget(
                title="Records per minute",
                left=[
                    self.metric("RecordsIngested", "Sum", MINUTE),
                    self.metric("RecordsQuarantined", "Sum", MINUTE),
                    self.metric("DuplicatesDropped", "Sum", MINUTE),
                ],
                width=12,
            ),
        )
        dashboard.add_widgets(
            cw.GraphWidget(
                title="Tokens per model (AWS/Bedrock)",
                left=[
                    self._search("InputTokenCount", "Sum", "input", "ModelId", namespace="AWS/Bedrock"),
                    self._search("OutputTokenCount", "Sum", "output", "ModelId", namespace="AWS/Bedrock"),
                ],
                width=12,
            ),
            cw.GraphWidget(
                title="Effects applied / failed",
                left=[self.metric("EffectsApplied", "Sum", MINUTE), self.metric("EffectsFailed", "Sum", MINUTE)],
                width=12,
            ),
        )
        dashboard.add_widgets(
            cw.GraphWidget(
                title="Guardrail functions: errors and throttles",
                left=[fn.function.metric_errors(period=MINUTE) for fn in functions],
                right=[fn.function.metric_throttles(period=MINUTE) for fn in functions],
                width=12,
            ),
            cw.AlarmStatusWidget(title="Guardrail alarms", alarms=list(self.alarms), width=12),
        )
        return dashboard


def _slug(selector: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", selector).strip("-").lower() or "scope"


def _id(selector: str) -> str:
    return "".join(part.capitalize() for part in re.split(r"[^A-Za-z0-9]+", selector) if part)
