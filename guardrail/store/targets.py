"""Shared target items: one per target function, holding its saved state and the set of scopes that stopped
it (key format: guardrail.store.table). Every change is one conditional UpdateItem, so two scopes racing to
stop one function save its state once, and only the last holder's release may restore it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from guardrail.core.models import Observed, TargetHold
from guardrail.store.table import TARGET_PREFIX, all_items, batch_get, item_key, target_key

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

NONE = "none"  # saved "no reservation" (which is not 0)
TOMBSTONE_TTL = timedelta(hours=1)  # far longer than any invocation that could still be stopping a target
# An item the schedule run made only to keep a reading (never held) lives this long unless read again.
OBSERVED_TTL = timedelta(days=1)
ONE = {"N": "1"}


def _saved_value(saved: int | None) -> dict[str, str]:
    return {"S": NONE} if saved is None else {"N": str(saved)}


def hold_from_item(item: dict[str, Any]) -> TargetHold:
    saved = item.get("saved", {"S": NONE})
    released = item.get("released_at", {}).get("S")
    observed = item.get("observed")
    return TargetHold(
        function=item["function"]["S"],
        saved=None if "S" in saved else int(saved["N"]),
        holders=frozenset(item.get("holders", {}).get("SS", [])),
        state="released" if item.get("state", {}).get("S") == "released" else "held",
        released_at=datetime.fromisoformat(released) if released else None,
        rev=int(item.get("rev", {}).get("N", "0")),
        observed=None
        if observed is None
        else Observed(
            value=None if "S" in observed else int(observed["N"]),
            at=datetime.fromisoformat(item["observed_at"]["S"]),
            rev=int(item["observed_rev"]["N"]),
        ),
    )


def _unchanged(seen: TargetHold | None) -> tuple[str, dict[str, Any]]:
    """The condition that the item is still exactly as `seen` (absent, or not written since)."""
    if seen is None:
        return "attribute_not_exists(pk)", {}
    if seen.rev == 0:  # written before items had a rev: the old tombstone condition
        return (
            "attribute_not_exists(rev) AND #st = :released AND attribute_not_exists(holders)",
            {":released": {"S": "released"}},
        )
    return "rev = :rev", {":rev": {"N": str(seen.rev)}}


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

    def get_many(self, functions: list[str]) -> dict[str, TargetHold | None]:
        """Several target items in one consistent BatchGetItem (None: no item)."""
        items = batch_get(self.client, self.table, [target_key(f) for f in functions])
        return {f: hold_from_item(i) if (i := items.get(target_key(f))) else None for f in functions}

    def list_all(self) -> list[TargetHold]:
        """Every target item (few: one per function ever stopped and not yet forgotten)."""
        items = all_items(
            self.client.scan,
            TableName=self.table,
            FilterExpression="begins_with(pk, :p)",
            ExpressionAttributeValues={":p": {"S": TARGET_PREFIX}},
            ConsistentRead=True,
        )
        return sorted(map(hold_from_item, items), key=lambda h: h.function)

    def _update(self, function: str, **kwargs: Any) -> TargetHold | None:
        """One conditional update; None when its condition failed."""
        try:
            resp = self.client.update_item(
                TableName=self.table, Key=item_key(target_key(function)), ReturnValues="ALL_NEW", **kwargs
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            return None
        return hold_from_item(resp["Attributes"])

    def take_request(self, function: str, scope: str, saved: int | None, seen: TargetHold | None) -> dict[str, Any]:
        """The update that saves `saved` as the function's pre-guardrail state with `scope` as its first holder,
        only while the item is exactly as `seen` (absent, a tombstone or a kept reading, and not written since):
        so a state read before it (from AWS, or the kept reading) is never saved over a hold someone took."""
        condition, values = _unchanged(seen)
        values |= {":f": {"S": function}, ":s": _saved_value(saved), ":held": {"S": "held"}, ":h": {"SS": [scope]}}
        return {
            "TableName": self.table,
            "Key": item_key(target_key(function)),
            # A held item never expires (a tombstone's or a kept reading's TTL goes with it).
            "UpdateExpression": "SET #fn = :f, saved = :s, #st = :held REMOVE released_at, expires_at "
            "ADD holders :h, rev :one",
            "ConditionExpression": condition,
            "ExpressionAttributeNames": {"#fn": "function", "#st": "state"},
            "ExpressionAttributeValues": {**values, ":one": ONE},
        }

    def join_request(self, function: str, scope: str, saved: int | None) -> dict[str, Any]:
        """The update that adds `scope` to the holders of a held item whose saved state is `saved` (it stays)."""
        return {
            "TableName": self.table,
            "Key": item_key(target_key(function)),
            "UpdateExpression": "ADD holders :h, rev :one",
            "ConditionExpression": "#st = :held AND saved = :s",
            "ExpressionAttributeNames": {"#st": "state"},
            "ExpressionAttributeValues": {
                ":h": {"SS": [scope]},
                ":held": {"S": "held"},
                ":s": _saved_value(saved),
                ":one": ONE,
            },
        }

    def apply(self, function: str, request: dict[str, Any]) -> TargetHold | None:
        """One take or join on its own (UpdateItem); None when its condition failed."""
        return self._update(function, **{k: v for k, v in request.items() if k not in ("TableName", "Key")})

    def observe(self, function: str, value: int | None, seen: TargetHold | None) -> bool:
        """Keep a reading of a target nobody holds (`seen`: the item read before the target was read), so a
        shutdown can save it without reading the target again. Only while the item is unchanged since `seen`:
        a hold taken meanwhile (and its stop) makes the reading worthless. False: it changed."""
        condition, values = _unchanged(seen)
        rev = (seen.rev if seen is not None else 0) + 1
        now = self.now()
        values |= {
            ":f": {"S": function},
            ":o": _saved_value(value),
            ":at": {"S": now.astimezone(UTC).isoformat()},
            ":orev": {"N": str(rev)},
            ":one": ONE,
        }
        update = "SET #fn = :f, observed = :o, observed_at = :at, observed_rev = :orev"
        if seen is None or seen.released_at is None:  # a kept reading's own item (a tombstone keeps its TTL)
            update += ", #st = :released, expires_at = :exp"
            values |= {":released": {"S": "released"}, ":exp": {"N": str(int((now + OBSERVED_TTL).timestamp()))}}
        if seen is not None:
            condition += " AND attribute_not_exists(holders) AND #st = :released"
            values[":released"] = {"S": "released"}
        return (
            self._update(
                function,
                UpdateExpression=update + " ADD rev :one",
                ConditionExpression=condition,
                ExpressionAttributeNames={"#fn": "function", "#st": "state"},
                ExpressionAttributeValues=values,
            )
            is not None
        )

    def forget_reading(self, function: str, seen: TargetHold) -> None:
        """The target was found stopped: the kept reading no longer says what a shutdown would save."""
        condition, values = _unchanged(seen)
        names = {"ExpressionAttributeNames": {"#st": "state"}} if "#st" in condition else {}
        self._update(
            function,
            UpdateExpression="REMOVE observed, observed_at, observed_rev ADD rev :one",
            ConditionExpression=condition,
            ExpressionAttributeValues={**values, ":one": ONE},
            **names,
        )

    def release(self, function: str, scope: str | None) -> TargetHold | None:
        """Remove `scope` from the holders (idempotent); the item as it is now, or None when there is none."""
        if scope is None:
            return self.get(function)
        return self._update(
            function,
            UpdateExpression="DELETE holders :h ADD rev :one",
            ConditionExpression="attribute_exists(pk)",
            ExpressionAttributeValues={":h": {"SS": [scope]}, ":one": ONE},
        )

    def mark_released(self, function: str, *, keep: timedelta = TOMBSTONE_TTL) -> bool:
        """After the restore: a tombstone that DynamoDB's TTL deletes after `keep`, unless another scope took
        hold meanwhile (then False). No DeleteItem: the functions' IAM policies have none."""
        now = self.now()
        return (
            self._update(
                function,
                UpdateExpression="SET #st = :released, released_at = :at, expires_at = :exp ADD rev :one",
                ConditionExpression="attribute_exists(pk) AND attribute_not_exists(holders)",
                ExpressionAttributeNames={"#st": "state"},
                ExpressionAttributeValues={
                    ":released": {"S": "released"},
                    ":at": {"S": now.astimezone(UTC).isoformat()},
                    ":exp": {"N": str(int((now + keep).timestamp()))},
                    ":one": ONE,
                },
            )
            is not None
        )

    def forget(self, function: str) -> None:
        """The function no longer exists: its item expires at once (unless someone holds it again)."""
        self.mark_released(function, keep=timedelta(0))
