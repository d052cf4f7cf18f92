"""The on-call policy: exactly what the CLI's `status`, `history` and `reset` need, as a managed policy.

The stack does not attach it: the platform team attaches it to the on-call engineers' role or group
(output `OnCallPolicyArn`). `sts:GetCallerIdentity`, which the CLI calls to name the actor of a reset,
needs no permission.
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Acknowledgment, Validations
from aws_cdk import aws_iam as iam
from constructs import Construct

from guardrail_cdk.constructs.alerting import Alerting
from guardrail_cdk.constructs.enforcement import CONCURRENCY_ACTIONS, ROLE_POLICY_ACTIONS
from guardrail_cdk.constructs.ledger import Ledger


class OnCall(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        ledger: Ledger,
        alerting: Alerting,
        target_arns: Sequence[str],
        role_arns: Sequence[str] = (),
    ) -> None:
        super().__init__(scope, construct_id)
        # status lists every flag (Scan) and reads counters; history queries the audit trail; reset writes
        # the flag transition and audit entry (the same table access as the reset function).
        statements = [ledger.engine_statement(scan=True), *alerting.notify_statements()]
        if target_arns:
            # status reads each target's reservation; reset puts back N, or deletes "none".
            statements.append(iam.PolicyStatement(actions=list(CONCURRENCY_ACTIONS), resources=list(target_arns)))
        if role_arns:
            # status reads each role's deny; reset deletes it (and puts it back if another scope took hold meanwhile).
            statements.append(iam.PolicyStatement(actions=list(ROLE_POLICY_ACTIONS), resources=list(role_arns)))
        self.policy = iam.ManagedPolicy(
            self,
            "Policy",
            description="Bedrock cost guardrail on-call: guardrail status, history and reset (attach to on-call)",
            statements=statements,
        )
        if alerting.slack_secret_pattern:
            Validations.of(self.policy).acknowledge(
                Acknowledgment(
                    id=f"AwsSolutions-IAM5[Resource::{alerting.slack_secret_pattern}]",
                    reason="The Slack webhook secret was given by name; Secrets Manager appends six "
                    "random characters to secret ARNs, so the grant matches exactly that suffix.",
                )
            )
