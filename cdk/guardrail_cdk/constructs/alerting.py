"""Alerting: the encrypted SNS topic, the Slack webhook secret, optional Slack through Amazon Q Developer.

The topic is encrypted with a customer managed key because CloudWatch alarms cannot publish to a topic
encrypted with the AWS managed `alias/aws/sns` key; the key policy lets CloudWatch (this account only)
use it. A topic policy replaces SNS's default one, so besides the TLS deny it allows exactly this stack's
CloudWatch alarms (named `<namePrefix>-*`, this account and Region) to publish; the functions publish
through their own roles' identity policies. The Slack channel configuration gets an explicit guardrail
policy that denies every action, so the channel can show notifications but nobody can act on the account
from Slack.
"""

from __future__ import annotations

from aws_cdk import Acknowledgment, ArnFormat, Aws, Duration, RemovalPolicy, Stack, Validations
from aws_cdk import aws_chatbot as chatbot
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sns as sns
from constructs import Construct

from guardrail_cdk.props import GuardrailProps


class Alerting(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, props: GuardrailProps) -> None:
        super().__init__(scope, construct_id)
        self.key = kms.Key(
            self,
            "TopicKey",
            description=f"{props.name_prefix}: encrypts the alert topic",
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.DESTROY,
            pending_window=Duration.days(7),
        )
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CloudWatchAlarmsPublishToTopic",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                resources=["*"],  # in a key policy, "*" means this key
                conditions={"StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID}},
            )
        )
        self.topic = sns.Topic(
            self,
            "Topic",
            display_name="Bedrock cost guardrail",
            master_key=self.key,
            enforce_ssl=True,
        )
        self.alarm_arns = Stack.of(self).format_arn(
            service="cloudwatch",
            resource="alarm",
            resource_name=f"{props.name_prefix}-*",
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        self.topic.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CloudWatchAlarmsPublish",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["sns:Publish"],
                resources=[self.topic.topic_arn],
                conditions={
                    "StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID},
                    "ArnLike": {"aws:SourceArn": self.alarm_arns},
                },
            )
        )

        self.slack_secret: secretsmanager.ISecret | None = None
        if props.slack_webhook_secret:
            ref = props.slack_webhook_secret
            if ref.startswith("arn:"):
                self.slack_secret = secretsmanager.Secret.from_secret_complete_arn(self, "SlackWebhook", ref)
            else:
                self.slack_secret = secretsmanager.Secret.from_secret_name_v2(self, "SlackWebhook", ref)

        self.slack_channel: chatbot.SlackChannelConfiguration | None = None
        if props.slack_channel:
            guardrail = iam.ManagedPolicy(
                self,
                "SlackGuardrailPolicy",
                description="Channel guardrail: notifications only, no action on the account from Slack",
                statements=[iam.PolicyStatement(effect=iam.Effect.DENY, actions=["*"], resources=["*"])],
            )
            self.slack_channel = chatbot.SlackChannelConfiguration(
                self,
                "SlackChannel",
                slack_channel_configuration_name=props.slack_channel.configuration_name or props.name_prefix,
                slack_workspace_id=props.slack_channel.workspace_id,
                slack_channel_id=props.slack_channel.channel_id,
                notification_topics=[self.topic],
                guardrail_policies=[guardrail],
            )

    @property
    def slack_secret_arn(self) -> str | None:
        return self.slack_secret.secret_arn if self.slack_secret else None

    @property
    def slack_secret_pattern(self) -> str | None:
        """The cdk-nag finding text of a secret given by name (its ARN ends in a wildcard suffix)."""
        if self.slack_secret is None or (self.slack_secret.secret_full_arn or "").startswith("arn:"):
            return None
        return (
            "arn:<AWS::Partition>:secretsmanager:<AWS::Region>:<AWS::AccountId>:secret:"
            + self.slack_secret.secret_name
            + "-??????"
        )

    def notify_statements(self) -> list[iam.PolicyStatement]:
        """Publish to the topic (and use its key); read the Slack webhook secret if there is one."""
        # Explicit instead of topic.grant_publish, which grants kms:GenerateDataKey* (a wildcard action).
        statements = [
            iam.PolicyStatement(actions=["sns:Publish"], resources=[self.topic.topic_arn]),
            iam.PolicyStatement(actions=["kms:GenerateDataKey", "kms:Decrypt"], resources=[self.key.key_arn]),
        ]
        if self.slack_secret:
            arn = self.slack_secret.secret_full_arn or f"{self.slack_secret.secret_arn}-??????"
            statements.append(
                iam.PolicyStatement(
                    actions=["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"], resources=[arn]
                )
            )
        return statements

    def grant_notify(self, role: iam.IRole) -> None:
        """Publish to the topic (and use its key); read the Slack webhook secret if there is one."""
        for statement in self.notify_statements():
            role.add_to_principal_policy(statement)
        if self.slack_secret_pattern:
            Validations.of(role).acknowledge(
                Acknowledgment(
                    id=f"AwsSolutions-IAM5[Resource::{self.slack_secret_pattern}]",
                    reason="The Slack webhook secret was given by name; Secrets Manager appends six "
                    "random characters to secret ARNs, so the grant matches exactly that suffix.",
                )
            )
