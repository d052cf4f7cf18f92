"""Shared target items: one per target function, holding its saved state and the set of scopes that stopped
it (key format: guardrail.store.table). Every change is one conditional UpdateItem, so two scopes racing to
stop one function save its state once, and only the last holder's release may restore it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from guardrail.core.models import TargetHold
from guardrail.store.table import TARGET_PREFIX, item_key, target_key

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

NONE = "none"  # saved "no reservation" (which is not 0)
TOMBSTONE_TTL = timedelta(hours=1)  # far longer than any invocation that could still be stopping a target


def _saved_value(saved: int | None) -> dict[str, str]:
    return {"S": NONE} if saved is None else {"N": str(saved)}


def hold_from_item(item: dict[str, Any]) -> TargetHold:
    saved = item.get("saved", {"S": NONE})
    released = item.get("released_at", {}).get("S")
    return TargetHold(
        function=item["function"]["S"],
        saved=None if "S" in saved else int(saved["N"]),
        holders=frozenset(item.get("holders", {}).get("SS", [])),
        state="released" if item.get("state", {}).get("S") == "released" else "held",
        released_at=datetime.fromisoformat(released) if released else None,
    )


class TargetStore:
    def __init__(
        self, client: DynamoDBClient, table_name: str, *, now: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        self.client = client
        self.table = table_name
        self.now = now

    def get(self, function: str) -> TargetHold | None:
        resp = self.client.get_item(TableName=self.table, Key=item_key(target_key(function)), ConsistentRead=True)
        item = resp.get("Item")
        return hold_from_item(item) if item else None

    def list_all(self) -> list[TargetHold]:
        """Every target item (few: one per function ever stopped and not yet forgotten)."""
        out: list[TargetHold] = []
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "FilterExpression": "begins_with(pk, :p)",
            "ExpressionAttributeValues": {":p": {"S": TARGET_PREFIX}},
            "ConsistentRead": True,
        }
        while True:
            resp = self.client.scan(**kwargs)
            out.extend(hold_from_item(i) for i in resp.get("Items", []))
            if "LastEvaluatedKey" not in resp:
                return sorted(out, key=lambda h: h.function)
            kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]

    def _update(self, function: str, **kwargs: Any) -> TargetHold | None:
        """One conditional update; None when its condition failed."""
        try:
            resp = self.client.update_item(
                TableName=self.table, Key=item_key(target_key(function)), ReturnValues="ALL_NEW", **kwargs
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            return None
        return hold_from_item(resp["Attributes"])

    def take(self, function: str, scope: str, saved: int | None, *, over_tombstone: bool) -> TargetHold | None:
        """Save `saved` as the function's pre-guardrail state with `scope` as its first holder: only when no
        item exists (or, `over_tombstone`, when the item is a released tombstone). None: someone was first."""
        tombstone = "#st = :released AND attribute_not_exists(holders)"
        condition = tombstone if over_tombstone else "attribute_not_exists(pk)"
        values: dict[str, Any] = {
            ":f": {"S": function},
            ":s": _saved_value(saved),
            ":held": {"S": "held"},
            ":h": {"SS": [scope]},
        }
        if over_tombstone:
            values[":released"] = {"S": "released"}
        return self._update(
            function,
            UpdateExpression="SET #fn = :f, saved = :s, #st = :held REMOVE released_at ADD holders :h",
            ConditionExpression=condition,
            ExpressionAttributeNames={"#fn": "function", "#st": "state"},
            ExpressionAttributeValues=values,
        )

    def join(self, function: str, scope: str) -> TargetHold | None:
        """Add `scope` to the holders of a held item (its saved state stays). None: not held any more."""
        return self._update(
            function,
            UpdateExpression="ADD holders :h",
            ConditionExpression="#st = :held",
            ExpressionAttributeNames={"#st": "state"},
            ExpressionAttributeValues={":h": {"SS": [scope]}, ":held": {"S": "held"}},
        )

    def release(self, function: str, scope: str | None) -> TargetHold | None:
        """Remove `scope` from the holders (idempotent); the item as it is now, or None when there is none."""
        if scope is None:
            return self.get(function)
        return self._update(
            function,
            UpdateExpression="DELETE holders :h",
            ConditionExpression="attribute_exists(pk)",
            ExpressionAttributeValues={":h": {"SS": [scope]}},
        )

    def mark_released(self, function: str, *, keep: timedelta = TOMBSTONE_TTL) -> bool:
        """After the restore: a tombstone that DynamoDB's TTL deletes after `keep`, unless another scope took
        hold meanwhile (then False). No DeleteItem: the functions' IAM policies have none."""
        now = self.now()
        return (
            self._update(
                function,
                UpdateExpression="SET #st = :released, released_at = :at, expires_at = :exp",
                ConditionExpression="attribute_exists(pk) AND attribute_not_exists(holders)",
                ExpressionAttributeNames={"#st": "state"},
                ExpressionAttributeValues={
                    ":released": {"S": "released"},
                    ":at": {"S": now.astimezone(UTC).isoformat()},
                    ":exp": {"N": str(int((now + keep).timestamp()))},
                },
            )
            is not None
        )

    def forget(self, function: str) -> None:
        """The function no longer exists: its item expires at once (unless someone holds it again)."""
        self.mark_released(function, keep=timedelta(0))
