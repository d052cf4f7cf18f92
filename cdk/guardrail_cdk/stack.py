"""The guardrail stack: wiring only. Each concern lives in its own construct under `constructs/`."""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnOutput, Stack
from constructs import Construct

from guardrail_cdk.constructs.alerting import Alerting
from guardrail_cdk.constructs.enforcement import Enforcement
from guardrail_cdk.constructs.function import FunctionCode
from guardrail_cdk.constructs.ingest import Ingest
from guardrail_cdk.constructs.ledger import Ledger
from guardrail_cdk.constructs.monitoring import Monitoring
from guardrail_cdk.constructs.oncall import OnCall
from guardrail_cdk.constructs.reset_url import ResetUrl
from guardrail_cdk.constructs.slack_reset import SlackReset
from guardrail_cdk.constructs.usage_bus import UsageBus
from guardrail_cdk.props import GuardrailProps


class GuardrailStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, props: GuardrailProps, **kwargs: Any) -> None:
        super().__init__(
            scope,
            construct_id,
            description="Bedrock cost guardrail: real-time spend ledger, alerts, throttle and shutdown",
            **kwargs,
        )
        settings = props.runtime_settings()
        self.props = props
        self.ledger = Ledger(self, "Ledger", table_name=props.table_name)
        self.alerting = Alerting(self, "Alerting", props=props)
        code = FunctionCode(self, "Code", bundle_dependencies=props.bundle_dependencies)
        environment = props.function_environment(
            table_name=self.ledger.table.table_name,
            topic_arn=self.alerting.topic.topic_arn,
            slack_secret_arn=self.alerting.slack_secret_arn,
        )
        self.usage_bus = UsageBus(self, "UsageBus", props=props)
        self.ingest = Ingest(
            self,
            "Ingest",
            props=props,
            code=code,
            environment=environment,
            ledger=self.ledger,
            alerting=self.alerting,
            usage_bus=self.usage_bus.bus,
        )
        self.enforcement = Enforcement(
            self,
            "Enforcement",
            props=props,
            code=code,
            environment=environment,
            ledger=self.ledger,
            alerting=self.alerting,
            usage=self.ingest.usage,
        )
        self.oncall = OnCall(
            self,
            "OnCall",
            ledger=self.ledger,
            alerting=self.alerting,
            target_arns=self.enforcement.target_arns,
            role_arns=self.enforcement.role_arns,
        )
        self.reset_url = ResetUrl(self, "ResetUrl", props=props, reset=self.enforcement.reset)
        self.slack_reset: SlackReset | None = None
        if props.slack_app:
            self.slack_reset = SlackReset(
                self,
                "SlackReset",
                props=props,
                app=props.slack_app,
                code=code,
                environment=environment,
                ledger=self.ledger,
                alerting=self.alerting,
                enforcement=self.enforcement,
            )
        self.monitoring = Monitoring(
            self,
            "Monitoring",
            props=props,
            settings=settings,
            ingest=self.ingest,
            functions=(*self.enforcement.functions, *([self.slack_reset.function] if self.slack_reset else [])),
            alerting=self.alerting,
        )

        CfnOutput(self, "TableName", value=self.ledger.table.table_name, description="GUARDRAIL_TABLE_NAME for the CLI")
        CfnOutput(self, "TopicArn", value=self.alerting.topic.topic_arn, description="Subscribe on-call here")
        CfnOutput(self, "ResetFunction", value=self.enforcement.reset.function.function_name)
        CfnOutput(
            self,
            "OnCallPolicyArn",
            value=self.oncall.policy.managed_policy_arn,
            description="Attach to on-call: what guardrail status, history and reset need",
        )
        CfnOutput(self, "InvocationLogGroup", value=self.ingest.log_group_name)
        CfnOutput(self, "Dashboard", value=self.monitoring.dashboard.dashboard_name)
