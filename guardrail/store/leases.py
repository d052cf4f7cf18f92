"""Budget lease items: one per scope and window (`table.lease_key`), written only by guarded clients.

A DynamoDB condition sees only the item it updates and cannot add, so the item keeps one number the
condition can compare: `claimed`, every slice granted minus every dollar returned (spent dollars stay in
it). A grant is one UpdateItem: `claimed += slice` if `claimed <= limit - slice`. Beside it, one map per
holder (`h_<holder>`: `a` its unspent amount at its last write, `x` the epoch second its grant expires),
so that anyone can return the slice of a holder that died: once `x` has passed, `claimed -= a` and the
entry is removed, conditional on the entry being exactly what was read. Holders write only their own
entry; others only remove expired ones. The item expires (TTL) a day after its window ends.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any, cast

from guardrail.core.models import CounterKey
from guardrail.store.table import item_key, lease_key

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

HOLDER_PREFIX = "h_"
ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class LeaseItem:
    """What a lease item held: `claimed`, and each holder's (unspent amount, expiry epoch seconds)."""

    claimed: Decimal = ZERO
    holders: dict[str, tuple[Decimal, float]] = field(default_factory=dict)


def lease_from_item(item: dict[str, Any] | None) -> LeaseItem:
    if not item:
        return LeaseItem()
    holders = {}
    for name, value in item.items():
        if name.startswith(HOLDER_PREFIX) and "M" in value:
            entry = value["M"]
            holders[name.removeprefix(HOLDER_PREFIX)] = (Decimal(entry["a"]["N"]), float(entry["x"]["N"]))
    return LeaseItem(Decimal(item["claimed"]["N"]) if "claimed" in item else ZERO, holders)


def _n(value: Decimal | float | int) -> dict[str, str]:
    return {"N": str(value)}


class DynamoLeaseStore:
    """Conditional updates of lease items. `calls` counts DynamoDB calls made (the benchmark reports it)."""

    def __init__(self, client: DynamoDBClient, table_name: str) -> None:
        self.client = client
        self.table = table_name
        self.calls = 0

    def _update(self, key: CounterKey, **request: Any) -> tuple[bool, LeaseItem]:
        """Run one UpdateItem; (True, the new item) or (False, the item that failed the condition)."""
        self.calls += 1
        try:
            resp = self.client.update_item(
                TableName=self.table,
                Key=item_key(lease_key(key)),
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
                **request,
            )
        except self.client.exceptions.ConditionalCheckFailedException as exc:
            return False, lease_from_item(cast("dict[str, Any] | None", exc.response.get("Item")))
        return True, lease_from_item(resp.get("Attributes"))

    def grant(
        self,
        key: CounterKey,
        holder: str,
        add: Decimal,
        *,
        limit: Decimal,
        held: bool,
        unspent: Decimal,
        expires: float,
        item_expires: int,
    ) -> tuple[bool, LeaseItem]:
        """Lease `add` more (0: only renew), leaving the holder `unspent` in all until `expires`.
        `held`: the holder believes its entry exists (else: that it does not); the update fails if it is
        wrong, which tells a holder that its expired entry was returned by someone else."""
        return self._update(
            key,
            UpdateExpression="SET claimed = if_not_exists(claimed, :zero) + :add, #h = :entry, "
            "expires_at = if_not_exists(expires_at, :ttl)",
            ConditionExpression="(attribute_not_exists(claimed) OR claimed <= :max) AND "
            + ("attribute_exists(#h)" if held else "attribute_not_exists(#h)"),
            ExpressionAttributeNames={"#h": HOLDER_PREFIX + holder},
            ExpressionAttributeValues={
                ":zero": _n(0),
                ":add": _n(add),
                ":max": _n(limit - add),
                ":entry": {"M": {"a": _n(unspent), "x": _n(round(expires, 3))}},
                ":ttl": _n(item_expires),
            },
        )

    def release(self, key: CounterKey, holder: str, returned: Decimal) -> bool:
        """Return `returned` (negative: pay a debt) and drop the holder's entry, if it still exists."""
        ok, _ = self._update(
            key,
            UpdateExpression="SET claimed = claimed - :ret REMOVE #h",
            ConditionExpression="attribute_exists(#h)",
            ExpressionAttributeNames={"#h": HOLDER_PREFIX + holder},
            ExpressionAttributeValues={":ret": _n(returned)},
        )
        return ok

    def repay(self, key: CounterKey, amount: Decimal) -> None:
        """Add spend that `claimed` lost: a holder spent from a slice after its last write, and someone
        returned that slice in full once it expired."""
        self._update(
            key,
            UpdateExpression="SET claimed = if_not_exists(claimed, :zero) + :amount",
            ExpressionAttributeValues={":zero": _n(0), ":amount": _n(amount)},
        )

    def reclaim(self, key: CounterKey, holder: str, unspent: Decimal, expires: float) -> bool:
        """Return an expired holder's slice (conditional on its entry being exactly what was read)."""
        ok, _ = self._update(
            key,
            UpdateExpression="SET claimed = claimed - :a REMOVE #h",
            ConditionExpression="#h.a = :a AND #h.x = :x",
            ExpressionAttributeNames={"#h": HOLDER_PREFIX + holder},
            ExpressionAttributeValues={":a": _n(unspent), ":x": _n(round(expires, 3))},
        )
        return ok
