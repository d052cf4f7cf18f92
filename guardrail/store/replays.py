"""Signed requests remembered once: a second delivery of the same Slack request (a replay) is refused.

One conditional put per request (`attribute_not_exists`): exactly one of two concurrent deliveries wins.
The item expires by TTL once its timestamp is too old to pass the freshness check anyway.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from guardrail.store.table import item_key, slack_request_key

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient


def first_time(client: DynamoDBClient, table: str, *, timestamp: str, signature: str, expires_at: datetime) -> bool:
    """Record the request; True when it was not seen before, False for a replay."""
    try:
        client.put_item(
            TableName=table,
            Item={
                **item_key(slack_request_key(timestamp, signature)),
                "expires_at": {"N": str(int(expires_at.timestamp()))},
            },
            ConditionExpression="attribute_not_exists(pk)",
        )
    except client.exceptions.ConditionalCheckFailedException:
        return False
    return True
