"""Reset from Slack: the function behind the Slack app's interactivity Request URL.

The URL's auth type is NONE because Slack cannot sign a request with SigV4: Slack signs it with the app's
signing secret instead, and the function refuses (HTTP 401) any request whose signature, timestamp (five
minutes) or novelty (a replay) fails, before it reads anything else (guardrail.service.slack_reset). Who may
reset is the on-call allowlist (`slackApp.oncallUsers`). The function gets exactly the reset function's
permissions (the table, the target functions, notifying) plus reading the Slack app's secret.
"""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import Acknowledgment, CfnOutput, Duration, Validations
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from guardrail_cdk.constructs.alerting import Alerting
from guardrail_cdk.constructs.enforcement import CONCURRENCY_ACTIONS, ROLE_POLICY_ACTIONS, Enforcement
from guardrail_cdk.constructs.function import FunctionCode, GuardrailFunction
from guardrail_cdk.constructs.ledger import Ledger
from guardrail_cdk.props import HANDLERS, GuardrailProps, SlackApp


class SlackReset(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        props: GuardrailProps,
        app: SlackApp,
        code: FunctionCode,
        environment: Mapping[str, str],
        ledger: Ledger,
        alerting: Alerting,
        enforcement: Enforcement,
    ) -> None:
        super().__init__(scope, construct_id)
        if app.secret.startswith("arn:"):
            self.secret = secretsmanager.Secret.from_secret_complete_arn(self, "AppSecret", app.secret)
        else:
            self.secret = secretsmanager.Secret.from_secret_name_v2(self, "AppSecret", app.secret)
        self.function = GuardrailFunction(
            self,
            "Slack",
            function_name=props.function_names["slack"],
            description="Bedrock cost guardrail: reset from Slack (signed interactions, on-call allowlist)",
            code=code.code,
            layers=[code.layer],
            handler=HANDLERS["slack"],
            environment={
                **environment,
                "GUARDRAIL_SLACK_APP_SECRET_ARN": self.secret.secret_arn,
                "GUARDRAIL_SLACK_ONCALL_USERS": ",".join(app.oncall_users),
            },
            memory_size=512,
            timeout=Duration.seconds(30),  # Slack waits 3 s; a reset that runs longer still finishes and answers
            log_retention_days=props.log_retention_days,
        )
        # The reset function's permissions, no more: the table as the reset uses it, the targets, notifying.
        self.function.add_policy("LedgerAccess", ledger.engine_statement(scan=True))
        if enforcement.target_arns:
            self.function.add_policy(
                "StopAndRestoreTargets",
                iam.PolicyStatement(actions=list(CONCURRENCY_ACTIONS), resources=enforcement.target_arns),
            )
        if enforcement.role_arns:
            self.function.add_policy(
                "DenyAndRestoreTargetRoles",
                iam.PolicyStatement(actions=list(ROLE_POLICY_ACTIONS), resources=enforcement.role_arns),
            )
        alerting.grant_notify(self.function.role)
        secret_arn = self.secret.secret_full_arn or f"{self.secret.secret_arn}-??????"
        self.function.add_policy(
            "SlackAppSecret", iam.PolicyStatement(actions=["secretsmanager:GetSecretValue"], resources=[secret_arn])
        )
        if not self.secret.secret_full_arn:
            Validations.of(self.function.role).acknowledge(
                Acknowledgment(
                    id="AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:secretsmanager:<AWS::Region>:"
                    f"<AWS::AccountId>:secret:{self.secret.secret_name}-??????]",
                    reason="The Slack app secret was given by name; Secrets Manager appends six random "
                    "characters to secret ARNs, so the grant matches exactly that suffix.",
                )
            )
        # NONE: Slack signs with the app's signing secret, not SigV4; the function verifies that signature.
        self.url = self.function.function.add_function_url(auth_type=lambda_.FunctionUrlAuthType.NONE)
        CfnOutput(
            scope,
            "SlackRequestUrl",
            value=self.url.url,
            description="The Slack app's Interactivity Request URL (requests verified by the signing secret)",
        )
