"""The usage event bus: the only way client usage events reach the guardrail.

Only principals the deployer names (`usageReporters`; the account root when none are named) may put events
on it. A resource policy Allow alone would not stop an identity of this account whose own IAM policy allows
`events:PutEvents`, so with named reporters an explicit Deny covers every other principal
(`aws:PrincipalArn`: for an assumed role this is the role's ARN, whatever the session name).
"""

from __future__ import annotations

from aws_cdk import ArnFormat, Aws, CfnOutput, Stack
from aws_cdk import aws_events as events
from constructs import Construct

from guardrail_cdk.props import GuardrailProps


class UsageBus(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, props: GuardrailProps) -> None:
        super().__init__(scope, construct_id)
        self.bus = events.EventBus(self, "Bus", event_bus_name=props.usage_bus_name)
        reporters = list(props.usage_reporters)
        # Built from the name: the bus's own ARN attribute inside its own policy would be a circular reference.
        bus_arn = Stack.of(self).format_arn(
            service="events",
            resource="event-bus",
            resource_name=props.usage_bus_name,
            arn_format=ArnFormat.SLASH_RESOURCE_NAME,
        )
        allow = {
            "Sid": "PutFromNamedReporters",
            "Effect": "Allow",
            "Principal": {"AWS": reporters or [f"arn:{Aws.PARTITION}:iam::{Aws.ACCOUNT_ID}:root"]},
            "Action": "events:PutEvents",
            "Resource": bus_arn,
        }
        statements = [allow]
        if reporters:
            statements.append(
                {
                    "Sid": "DenyEveryoneElse",
                    "Effect": "Deny",
                    "Principal": "*",
                    "Action": "events:PutEvents",
                    "Resource": bus_arn,
                    "Condition": {"ArnNotLike": {"aws:PrincipalArn": reporters}},
                }
            )
        cfn = self.bus.node.default_child
        assert isinstance(cfn, events.CfnEventBus)
        cfn.policy = {"Version": "2012-10-17", "Statement": statements}
        CfnOutput(
            scope,
            "UsageEventBus",
            value=self.bus.event_bus_name,
            description="GUARDRAIL_USAGE_EVENT_BUS for guarded clients (report='events')",
        )
