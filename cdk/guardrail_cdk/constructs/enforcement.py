"""Enforcement: the alarm, reset and schedule functions, their triggers, and who may touch targets.

Concurrency permissions name only the target functions' ARNs, and every function that evaluates a
flag gets Get/Put/DeleteFunctionConcurrency: a shutdown may start in usage, alarm or schedule, and a
restore runs wherever a flag leaves shutdown: reset, a budget with `shutdown_auto_clears` at rollover
(usage, alarm or schedule, whichever evaluates first), an alarm back to OK, and the schedule's retry of
a refused restore. A target that had no reservation is restored with DeleteFunctionConcurrency.

Role targets (callers that are not Lambda functions): the same functions may get, put and delete inline
policies on exactly the configured role ARNs, nothing else; the code only ever writes its own deny policy
(IAM has no condition key for an inline policy's name, so the ARN list is the boundary). Synth refuses the
stack's own roles (a function that could edit its own role's policies could grant itself anything).

Target ARNs must name the stack's own account (and, for functions, Region): checked at synth when the stack
has an environment, and by a template rule (before any resource changes) when it is environment-agnostic.
"""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import (
    Acknowledgment,
    ArnFormat,
    Aws,
    CfnRule,
    CfnRuleAssertion,
    Duration,
    Fn,
    Stack,
    Token,
    Validations,
)
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from constructs import Construct

from guardrail.core.config import role_name
from guardrail.core.errors import ConfigError
from guardrail_cdk.constructs.alerting import Alerting
from guardrail_cdk.constructs.function import FunctionCode, GuardrailFunction
from guardrail_cdk.constructs.ingest import EVENT_TARGET_MAX_AGE, EVENT_TARGET_RETRIES
from guardrail_cdk.constructs.ledger import Ledger
from guardrail_cdk.props import HANDLERS, GuardrailProps

CONCURRENCY_ACTIONS = (
    "lambda:GetFunctionConcurrency",
    "lambda:PutFunctionConcurrency",
    "lambda:DeleteFunctionConcurrency",
)
# The role target's deny: read (status, drift), put (shutdown), delete (restore), on the role ARNs only.
ROLE_POLICY_ACTIONS = ("iam:GetRolePolicy", "iam:PutRolePolicy", "iam:DeleteRolePolicy")
# Reconciliation lists the AWS/Bedrock models with metrics, then reads their token counts.
RECONCILIATION_ACTIONS = ("cloudwatch:ListMetrics", "cloudwatch:GetMetricData")
ALARM_EVENT_DETAIL_TYPE = "CloudWatch Alarm State Change"


class Enforcement(Construct):
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
        usage: GuardrailFunction,
    ) -> None:
        super().__init__(scope, construct_id)
        names = props.function_names
        self._check_place(props)
        self._check_roles(props)
        self.target_arns = [self._target_arn(t) for t in props.all_functions]
        self.role_arns = list(props.all_roles)

        def function(role: str, description: str, timeout: int) -> GuardrailFunction:
            fn = GuardrailFunction(
                self,
                role.capitalize(),
                function_name=names[role],
                description=description,
                code=code.code,
                layers=[code.layer],
                handler=HANDLERS[role],
                environment=environment,
                memory_size=512,
                timeout=Duration.seconds(timeout),
                log_retention_days=props.log_retention_days,
            )
            alerting.grant_notify(fn.role)
            return fn

        self.alarm = function("alarm", "Bedrock cost guardrail: applies the level mapped to a CloudWatch alarm", 60)
        self.reset = function("reset", "Bedrock cost guardrail: on-call reset, restores every effect", 120)
        self.schedule = function("schedule", "Bedrock cost guardrail: window rollover, drift repair", 240)

        self.alarm.add_policy("LedgerAccess", ledger.engine_statement())
        self.reset.add_policy("LedgerAccess", ledger.engine_statement(scan=True))
        self.schedule.add_policy("LedgerAccess", ledger.engine_statement(scan=True))

        if self.target_arns:
            for fn in (usage, self.alarm, self.reset, self.schedule):
                fn.add_policy(
                    "StopAndRestoreTargets",
                    iam.PolicyStatement(actions=list(CONCURRENCY_ACTIONS), resources=self.target_arns),
                )
        if self.role_arns:
            for fn in (usage, self.alarm, self.reset, self.schedule):
                fn.add_policy(
                    "DenyAndRestoreTargetRoles",
                    iam.PolicyStatement(actions=list(ROLE_POLICY_ACTIONS), resources=self.role_arns),
                )

        reconcile = self.schedule.add_policy(
            "Reconciliation", iam.PolicyStatement(actions=list(RECONCILIATION_ACTIONS), resources=["*"])
        )
        Validations.of(reconcile).acknowledge(
            Acknowledgment(
                id="AwsSolutions-IAM5[Resource::*]",
                reason="cloudwatch:ListMetrics and cloudwatch:GetMetricData (read-only reconciliation against "
                "AWS/Bedrock token metrics) have no resource-level permissions.",
            )
        )

        # Triggers: alarm state changes of mapped alarms, and the schedule.
        self.alarm_rule: events.Rule | None = None
        if props.alarm_levels:
            self.alarm_rule = events.Rule(
                self,
                "AlarmStateChanges",
                description="State changes of the CloudWatch alarms mapped to guardrail levels",
                event_pattern=events.EventPattern(
                    source=["aws.cloudwatch"],
                    detail_type=[ALARM_EVENT_DETAIL_TYPE],
                    detail={"alarmName": sorted(props.alarm_levels)},
                ),
            )
            self.alarm_rule.add_target(self._target(self.alarm))
        self.schedule_rule = events.Rule(
            self,
            "ScheduleRule",
            description="Window rollover, drift repair and reconciliation",
            schedule=events.Schedule.rate(Duration.minutes(props.schedule_minutes)),
        )
        self.schedule_rule.add_target(self._target(self.schedule))

    @property
    def functions(self) -> tuple[GuardrailFunction, ...]:
        return (self.alarm, self.reset, self.schedule)

    def _target(self, fn: GuardrailFunction) -> targets.LambdaFunction:
        return targets.LambdaFunction(
            fn.function,
            dead_letter_queue=fn.failure_queue,
            retry_attempts=EVENT_TARGET_RETRIES,
            max_event_age=EVENT_TARGET_MAX_AGE,
        )

    def _check_place(self, props: GuardrailProps) -> None:
        """Target ARNs of another account or Region could never be stopped: refuse them."""
        place = props.target_place
        if place is None:
            return
        account, region = place
        stack = Stack.of(self)
        if not Token.is_unresolved(stack.account) and not Token.is_unresolved(stack.region):
            if (account, region) != (stack.account, stack.region):
                raise ConfigError(
                    f"targetFunctions: target ARNs name account {account} / Region {region}, but the stack "
                    f"deploys to account {stack.account} / Region {stack.region}; the guardrail stops functions "
                    "only in its own account and Region"
                )
            return
        # Environment-agnostic: CloudFormation checks before it creates or changes any resource.
        CfnRule(
            self,
            "TargetsInThisAccountAndRegion",
            assertions=[
                CfnRuleAssertion(
                    assert_=Fn.condition_and(
                        Fn.condition_equals(Aws.ACCOUNT_ID, account), Fn.condition_equals(Aws.REGION, region)
                    ),
                    assert_description=f"Target function ARNs name account {account} / Region {region}: "
                    "deploy the guardrail there (it stops functions only in its own account and Region).",
                )
            ],
        )

    def _check_roles(self, props: GuardrailProps) -> None:
        """Never the stack's own roles; only roles of the stack's account."""
        stack = Stack.of(self)
        for arn in props.all_roles:
            name = role_name(arn)
            if name.startswith((f"{stack.stack_name}-", f"{props.name_prefix}-")):
                raise ConfigError(
                    f"targetRoles: {arn!r} looks like one of the guardrail's own roles (CloudFormation names this "
                    f"stack's roles {stack.stack_name}-<id>-<suffix>); the guardrail never edits its own roles' "
                    "policies (a function that could would be able to grant itself anything)"
                )
        account = props.role_account
        if account is None:
            return
        if not Token.is_unresolved(stack.account):
            if account != stack.account:
                raise ConfigError(
                    f"targetRoles: role ARNs name account {account}, but the stack deploys to account "
                    f"{stack.account}; the guardrail denies roles only in its own account"
                )
            return
        CfnRule(
            self,
            "RolesInThisAccount",
            assertions=[
                CfnRuleAssertion(
                    assert_=Fn.condition_equals(Aws.ACCOUNT_ID, account),
                    assert_description=f"Target role ARNs name account {account}: deploy the guardrail there "
                    "(it denies roles only in its own account).",
                )
            ],
        )

    def _target_arn(self, target: str) -> str:
        if target.startswith("arn:"):
            return target
        return Stack.of(self).format_arn(
            service="lambda", resource="function", resource_name=target, arn_format=ArnFormat.COLON_RESOURCE_NAME
        )
