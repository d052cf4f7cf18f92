"""Ingest: the usage function and everything that feeds it.

- Bedrock invocation logs: an existing log group, or one created here with invocation logging turned on
  by a custom resource; a subscription filter sends every record to the usage function.
- Client usage events: an EventBridge rule for `source=guardrail.client`, `detail-type` `Bedrock Usage`
  (one report), `Bedrock Usage Batch` (several packed) or `Bedrock Usage Rows` (several as rows: what clients
  send now), on the guardrail's own usage bus.
Both paths invoke asynchronously; failures land in the usage function's queue (on-failure destination
and EventBridge dead-letter queue), which the monitoring construct alarms on.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from aws_cdk import Acknowledgment, ArnFormat, Aws, CustomResource, Duration, Stack, Validations
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_logs_destinations as log_destinations
from constructs import Construct

from guardrail_cdk.constructs.alerting import Alerting
from guardrail_cdk.constructs.function import FunctionCode, GuardrailFunction, retention
from guardrail_cdk.constructs.ledger import Ledger
from guardrail_cdk.props import HANDLERS, USAGE_EVENT_DETAIL_TYPES, USAGE_EVENT_SOURCE, GuardrailProps

CUSTOM_RESOURCE_CODE = Path(__file__).resolve().parents[1] / "runtime" / "invocation_logging.py"
EVENT_TARGET_RETRIES = 8
EVENT_TARGET_MAX_AGE = Duration.hours(6)


class Ingest(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        props: GuardrailProps,
        code: FunctionCode,
        environment: Mapping[str, str],
        ledger: Ledger,
        alerting: Alerting,
        usage_bus: events.IEventBus | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self.usage = GuardrailFunction(
            self,
            "Usage",
            function_name=props.function_names["usage"],
            description="Bedrock cost guardrail: prices and records usage, escalates per budget",
            code=code.code,
            layers=[code.layer],
            handler=HANDLERS["usage"],
            environment=environment,
            memory_size=1024,
            timeout=Duration.seconds(120),
            log_retention_days=props.log_retention_days,
            reserved_concurrency=props.ingest_reserved_concurrency,
        )
        self.usage.add_policy("LedgerAccess", ledger.engine_statement(batch_write=True))
        alerting.grant_notify(self.usage.role)
        profiles = stack.format_arn(
            service="bedrock",
            resource="application-inference-profile",
            resource_name="*",
            arn_format=ArnFormat.SLASH_RESOURCE_NAME,
        )
        resolve = self.usage.add_policy(
            "ResolveInferenceProfiles",
            iam.PolicyStatement(actions=["bedrock:GetInferenceProfile"], resources=[profiles]),
        )
        Validations.of(resolve).acknowledge(
            Acknowledgment(
                id="AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:bedrock:<AWS::Region>:<AWS::AccountId>:"
                "application-inference-profile/*]",
                reason="Application inference profiles are created by application teams at any time; the "
                "usage function resolves any of this account's profiles in this Region to its model "
                "(read-only GetInferenceProfile).",
            )
        )

        # Client usage events.
        self.usage_rule = events.Rule(
            self,
            "UsageEvents",
            description="Usage events sent by guardrail.client",
            event_bus=usage_bus,  # the guardrail's own bus: only named reporters may put (constructs/usage_bus.py)
            event_pattern=events.EventPattern(source=[USAGE_EVENT_SOURCE], detail_type=list(USAGE_EVENT_DETAIL_TYPES)),
        )
        self.usage_rule.add_target(
            targets.LambdaFunction(
                self.usage.function,
                dead_letter_queue=self.usage.failure_queue,
                retry_attempts=EVENT_TARGET_RETRIES,
                max_event_age=EVENT_TARGET_MAX_AGE,
            )
        )

        # Bedrock invocation logs.
        logs_props = props.invocation_logs
        self.invocation_logging: CustomResource | None = None
        self.provider: GuardrailFunction | None = None
        if logs_props.mode == "existing":
            assert logs_props.log_group_name
            self.log_group: logs.ILogGroup = logs.LogGroup.from_log_group_name(
                self, "InvocationLogs", logs_props.log_group_name
            )
        else:
            self.log_group = logs.LogGroup(
                self,
                "InvocationLogs",
                log_group_name=logs_props.log_group_name,
                retention=retention(logs_props.retention_days),
            )
        self.subscription_filter_name = f"{props.name_prefix}-usage"
        self.subscription = logs.SubscriptionFilter(
            self,
            "InvocationLogSubscription",
            log_group=self.log_group,
            destination=log_destinations.LambdaDestination(self.usage.function),
            filter_pattern=logs.FilterPattern.all_events(),
            filter_name=self.subscription_filter_name,
        )
        if logs_props.mode == "create":
            assert isinstance(self.log_group, logs.LogGroup)
            self.invocation_logging = self._turn_on_invocation_logging(props, self.log_group)
            self.invocation_logging.node.add_dependency(self.subscription)

    @property
    def log_group_name(self) -> str:
        return self.log_group.log_group_name

    def _turn_on_invocation_logging(self, props: GuardrailProps, log_group: logs.LogGroup) -> CustomResource:
        stack = Stack.of(self)
        delivery_role = iam.Role(
            self,
            "InvocationLogDeliveryRole",
            description="Bedrock writes model invocation logs to the guardrail's log group",
            assumed_by=iam.ServicePrincipal(
                "bedrock.amazonaws.com",
                conditions={
                    "StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID},
                    "ArnLike": {"aws:SourceArn": stack.format_arn(service="bedrock", resource="*")},
                },
            ),
        )
        log_group.grant_write(delivery_role)

        provider = self.provider = GuardrailFunction(
            self,
            "InvocationLoggingProvider",
            function_name=f"{props.name_prefix}-invocation-logging",
            description="Custom resource: turns Bedrock model invocation logging on for the guardrail",
            code=lambda_.Code.from_inline(CUSTOM_RESOURCE_CODE.read_text()),
            handler="index.handler",
            memory_size=256,
            timeout=Duration.seconds(60),
            log_retention_days=props.log_retention_days,
        )
        api = provider.add_policy(
            "InvocationLoggingConfiguration",
            iam.PolicyStatement(
                actions=[
                    "bedrock:GetModelInvocationLoggingConfiguration",
                    "bedrock:PutModelInvocationLoggingConfiguration",
                    "bedrock:DeleteModelInvocationLoggingConfiguration",
                ],
                resources=["*"],
            ),
            iam.PolicyStatement(
                actions=["iam:PassRole"],
                resources=[delivery_role.role_arn],
                conditions={"StringEquals": {"iam:PassedToService": "bedrock.amazonaws.com"}},
            ),
        )
        Validations.of(api).acknowledge(
            Acknowledgment(
                id="AwsSolutions-IAM5[Resource::*]",
                reason="Bedrock's Get/Put/DeleteModelInvocationLoggingConfiguration act on the account's "
                "single per-Region configuration and support no resource ARN.",
            )
        )
        resource = CustomResource(
            self,
            "InvocationLogging",
            service_token=provider.function.function_arn,
            resource_type="Custom::BedrockInvocationLogging",
            properties={"LogGroupName": log_group.log_group_name, "RoleArn": delivery_role.role_arn},
        )
        resource.node.add_dependency(api)
        if delivery_role.node.try_find_child("DefaultPolicy"):
            resource.node.add_dependency(delivery_role.node.find_child("DefaultPolicy"))
        return resource
