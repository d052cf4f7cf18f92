"""One guardrail Lambda function: its own role, log group and on-failure queue, arm64, current Python.

Every function the stack creates goes through `GuardrailFunction`, so each gets the same hardening:
an inline-policy-only role (no managed policies), a log group with retention that only this role can
write, X-Ray tracing, and an SQS on-failure destination for asynchronous invocations (CloudWatch Logs
subscriptions, EventBridge, CloudFormation custom resources and `--invocation-type Event` all invoke
asynchronously). EventBridge targets reuse the same queue as their dead-letter queue.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from aws_cdk import Acknowledgment, Duration, RemovalPolicy, Validations
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_destinations as destinations
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from guardrail_cdk import bundling

ASYNC_RETRY_ATTEMPTS = 2
ASYNC_MAX_EVENT_AGE = Duration.hours(6)


class FunctionCode(Construct):
    """The code shared by the four guardrail functions: the packages, and one dependency layer."""

    def __init__(self, scope: Construct, construct_id: str, *, bundle_dependencies: bool) -> None:
        super().__init__(scope, construct_id)
        self.code = bundling.source_code()
        self.layer = lambda_.LayerVersion(
            self,
            "Dependencies",
            code=bundling.dependency_code(install=bundle_dependencies),
            compatible_architectures=[bundling.ARCHITECTURE],
            compatible_runtimes=[bundling.RUNTIME],
            description="bedrock-guardrail runtime dependencies (pydantic, genai-prices, powertools, ...)",
        )


class GuardrailFunction(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        function_name: str,
        description: str,
        code: lambda_.Code,
        handler: str,
        environment: Mapping[str, str] | None = None,
        layers: Sequence[lambda_.ILayerVersion] = (),
        memory_size: int = 512,
        timeout: Duration | None = None,
        log_retention_days: int = 30,
        reserved_concurrency: int | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.log_group = logs.LogGroup(
            self,
            "Logs",
            retention=retention(log_retention_days),
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"{function_name}: inline policies only",
        )
        self.log_group.grant_write(self.role)
        self.failure_queue = sqs.Queue(
            self,
            "FailureQueue",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.days(14),
        )
        Validations.of(self.failure_queue).acknowledge(
            Acknowledgment(
                id="AwsSolutions-SQS3",
                reason=f"This queue is the dead-letter queue / on-failure destination of {function_name}; "
                "it is the end of the retry chain and is alarmed on depth.",
            )
        )
        self.function = lambda_.Function(
            self,
            "Function",
            function_name=function_name,
            description=description,
            runtime=bundling.RUNTIME,
            architecture=bundling.ARCHITECTURE,
            code=code,
            handler=handler,
            layers=list(layers),
            environment=dict(environment or {}),
            memory_size=memory_size,
            timeout=timeout or Duration.seconds(60),
            role=self.role,
            log_group=self.log_group,
            tracing=lambda_.Tracing.ACTIVE,
            reserved_concurrent_executions=reserved_concurrency,
            on_failure=destinations.SqsDestination(self.failure_queue),
            retry_attempts=ASYNC_RETRY_ATTEMPTS,
            max_event_age=ASYNC_MAX_EVENT_AGE,
        )
        # Tracing adds xray:PutTraceSegments / PutTelemetryRecords to the role's default policy.
        Validations.of(self.role).acknowledge(
            Acknowledgment(
                id="AwsSolutions-IAM5[Resource::*]",
                reason="Default policy holds only xray:PutTraceSegments and xray:PutTelemetryRecords "
                "(added by Tracing.ACTIVE); X-Ray has no resource-level permissions for them.",
            )
        )

    def add_policy(self, construct_id: str, *statements: iam.PolicyStatement) -> iam.Policy:
        """A named inline policy on this function's role (one per concern, so each is easy to audit)."""
        policy = iam.Policy(self, construct_id, statements=list(statements))
        policy.attach_to_role(self.role)
        return policy


_RETENTION = dict(
    zip(
        (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653),
        [m for m in logs.RetentionDays if m is not logs.RetentionDays.INFINITE],
        strict=True,
    )
)


def retention(days: int) -> logs.RetentionDays:
    """CloudWatch Logs retention from a number of days (the props model accepts only valid values)."""
    return _RETENTION[days]
