"""The ledger table: the schema of `guardrail.store.ledger.create_table`, on-demand, PITR, TTL, retained."""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from constructs import Construct

# Same names as guardrail/ledger.py's create_table (the infrastructure tests compare the two).
PARTITION_KEY = "pk"
SORT_KEY = "sk"
TTL_ATTRIBUTE = "expires_at"

READ_ACTIONS = ("dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query", "dynamodb:DescribeTable")
# TransactWriteItems is authorised per contained operation (Put / Update / ConditionCheck / Delete: a ledger
# batch leaves the open-batch index when it is applied).
WRITE_ACTIONS = ("dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:ConditionCheckItem", "dynamodb:DeleteItem")


class Ledger(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, table_name: str | None = None) -> None:
        super().__init__(scope, construct_id)
        self.table = dynamodb.Table(
            self,
            "Table",
            table_name=table_name,
            partition_key=dynamodb.Attribute(name=PARTITION_KEY, type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name=SORT_KEY, type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            time_to_live_attribute=TTL_ATTRIBUTE,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            removal_policy=RemovalPolicy.RETAIN,
        )

    def engine_statement(self, *, scan: bool = False, batch_write: bool = False) -> iam.PolicyStatement:
        """Exactly what the engine does on the table (ledger, flags, audit), nothing on other tables.

        `scan`: listing every flag (status, drift repair). `batch_write`: storing quarantined input.
        """
        actions = [*READ_ACTIONS, *WRITE_ACTIONS]
        if scan:
            actions.append("dynamodb:Scan")
        if batch_write:
            actions.append("dynamodb:BatchWriteItem")
        return iam.PolicyStatement(actions=actions, resources=[self.table.table_arn])
