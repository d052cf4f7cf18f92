"""The one DynamoDB table: its schema, every key format, and consistent batch reads.

No other module writes a key literal. String keys `pk` / `sk`, on-demand, TTL attribute `expires_at`:

| item                   | pk                                | sk                                       | TTL |
|------------------------|-----------------------------------|------------------------------------------|-----|
| per request            | `REQ#<request id>`                | `REQ`                                    | yes |
| scope-window counter   | `SCOPE#<scope>`                   | `WINDOW#<kind>#<start>`                  | no  |
| burn-rate bucket       | `SCOPE#<scope>`                   | `WINDOW#5min#<start>`                    | yes |
| flag                   | `FLAG#<scope>`                    | `FLAG`                                   | no  |
| dry-run flag           | `DRYRUN-FLAG#<scope>`             | `FLAG`                                   | no  |
| audit entry            | `AUDIT`                           | `<iso time>#<scope>#<version>#<id>`      | no  |
| quarantined input      | `QUARANTINE#<date>`               | `<iso time>#<digest>`                    | yes |
| "already alerted" mark | `ALERTED#<what>#<date>`           | `<subject>`                              | yes |
| shared target          | `TARGET#<function name>`          | `TARGET`                                 | no  |
| spend by model/app/caller | `BY#<scope>#<window key>#<dim>` | `<value>`                                | no  |
| Slack request seen     | `SLACKREQ#<timestamp>#<signature>` | `SLACKREQ`                              | yes |
| budget lease           | `LEASE#<scope>`                   | `WINDOW#<kind>#<start>`                  | yes |
| ledger batch state     | `BATCH#<batch id>`                | `STATE`                                  | yes |
| ledger batch claims    | `BATCH#<batch id>`                | `CLAIM#<n>`                              | yes |
| ledger batch part done | `BATCH#<batch id>`                | `PART#<n>`                               | yes |
| open ledger batch      | `OPENBATCH`                       | `<batch id>`                             | no  |

An open-batch entry is deleted when its batch is applied. A burn-rate bucket too old to be read again is
not written (guardrail.core.windows.bucket_cutoff).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from guardrail.core.models import CounterKey, WindowRef

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

Key = tuple[str, str]  # (pk, sk)

REQUEST_PREFIX = "REQ#"
REQUEST_SK = "REQ"
COUNTER_PREFIX = "SCOPE#"
WINDOW_PREFIX = "WINDOW#"
FLAG_PREFIX = "FLAG#"
# Dry-run flags live beside the real ones: the whole path runs (and alerts once per transition), but
# the flags that guarded clients read never change.
DRY_RUN_FLAG_PREFIX = "DRYRUN-FLAG#"
FLAG_SK = "FLAG"
AUDIT_PK = "AUDIT"
QUARANTINE_PREFIX = "QUARANTINE#"
ALERTED_PREFIX = "ALERTED#"
BY_PREFIX = "BY#"  # one item per (scope, budget window, model/app/caller): no item grows with cardinality
TARGET_PREFIX = "TARGET#"
TARGET_SK = "TARGET"
SLACK_REQUEST_PREFIX = "SLACKREQ#"  # a signed Slack request, remembered once so a replay is refused
SLACK_REQUEST_SK = "SLACKREQ"
LEASE_PREFIX = "LEASE#"  # apart from the counter: lease traffic never contends with ledger writes
BATCH_PREFIX = "BATCH#"  # a ledger batch applied by sums (guardrail.store.batches)
OPEN_BATCHES_PK = "OPENBATCH"  # the batches not yet applied: what the schedule run completes
BREAKDOWN_PREFIX = "by:"  # legacy counter attributes holding spend by model/app/caller (read, never written)


def request_key(request_id: str) -> Key:
    return f"{REQUEST_PREFIX}{request_id}", REQUEST_SK


def counter_pk(scope: str) -> str:
    return f"{COUNTER_PREFIX}{scope}"


def counter_sk(window: WindowRef) -> str:
    return f"{WINDOW_PREFIX}{window.key}"


def counter_key(key: CounterKey) -> Key:
    return counter_pk(key[0]), counter_sk(key[1])


def lease_key(key: CounterKey) -> Key:
    """One lease item per scope and window: the slices guarded clients hold of its headroom."""
    return f"{LEASE_PREFIX}{key[0]}", counter_sk(key[1])


def batch_key(batch: str, part: str) -> Key:
    """`part`: `STATE`, `CLAIM#<n>` or `PART#<n>`."""
    return f"{BATCH_PREFIX}{batch}", part


def open_batch_key(batch: str) -> Key:
    return OPEN_BATCHES_PK, batch


def flag_key(scope: str, *, dry_run: bool = False) -> Key:
    return f"{DRY_RUN_FLAG_PREFIX if dry_run else FLAG_PREFIX}{scope}", FLAG_SK


def flag_prefix(*, dry_run: bool = False) -> str:
    return DRY_RUN_FLAG_PREFIX if dry_run else FLAG_PREFIX


def breakdown_pk(scope: str, window: WindowRef, dimension: str) -> str:
    # Apart from the counter's partition, and one per dimension, so breakdown writes spread out.
    return bounded(f"{BY_PREFIX}{scope}#{window.key}#{dimension}")


@lru_cache(maxsize=8192)  # every transaction of a batch names the same few items again
def breakdown_key(scope: str, window: WindowRef, key: str) -> Key:
    """`key` is `<dimension>:<value>` (model, app or caller)."""
    dimension, _, value = key.partition(":")
    return breakdown_pk(scope, window, dimension), bounded(value or "-")


def target_key(function: str) -> Key:
    """One item per target function (its canonical name): saved state and the scopes holding it."""
    return f"{TARGET_PREFIX}{bounded(function)}", TARGET_SK


def slack_request_key(timestamp: str, signature: str) -> Key:
    """One item per signed Slack request (both parts are from the request; bounded like any outside text)."""
    return bounded(f"{SLACK_REQUEST_PREFIX}{timestamp}#{signature}"), SLACK_REQUEST_SK


def is_flag(key: Key) -> bool:
    return key[1] == FLAG_SK


def audit_key(at: datetime, scope: str, version: int, entry_id: str) -> Key:
    # Version in the key keeps one scope's entries in order even when the clock does not move.
    return AUDIT_PK, f"{at.astimezone(UTC).isoformat()}#{scope}#{version:012d}#{entry_id}"


def quarantine_pk(day: datetime) -> str:
    return f"{QUARANTINE_PREFIX}{day.astimezone(UTC).date().isoformat()}"


def quarantine_key(received_at: datetime, digest: str) -> Key:
    return quarantine_pk(received_at), f"{received_at.astimezone(UTC).isoformat()}#{digest}"


def alerted_key(what: str, day: str, subject: str) -> Key:
    return f"{ALERTED_PREFIX}{what}#{day}", bounded(subject)


MAX_KEY_TEXT_BYTES = 512  # DynamoDB allows 1,024 bytes of sort key and 2,048 of partition key


def bounded(text: str) -> str:
    """Outside text made safe to use in a key: short text as it is, long text cut and suffixed with its
    digest (so two long values never share a key)."""
    data = text.encode("utf-8", "surrogatepass")
    if len(data) <= MAX_KEY_TEXT_BYTES:
        return text
    digest = hashlib.sha256(data).hexdigest()[:32]
    return data[:400].decode("utf-8", "ignore") + "#" + digest


def item_key(key: Key) -> dict[str, dict[str, str]]:
    """A (pk, sk) pair as DynamoDB wants it in Key / Keys / an Item."""
    return {"pk": {"S": key[0]}, "sk": {"S": key[1]}}


def create_table(dynamodb_client: DynamoDBClient, table_name: str) -> None:
    """Create the table (for local use and tests; the CDK stack defines the same schema)."""
    dynamodb_client.create_table(
        TableName=table_name,
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        KeySchema=[
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    dynamodb_client.get_waiter("table_exists").wait(TableName=table_name, WaiterConfig={"Delay": 1})
    dynamodb_client.update_time_to_live(
        TableName=table_name, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"}
    )


def batch_get(
    client: DynamoDBClient, table: str, keys: Sequence[Key], on_call: Callable[[], None] | None = None
) -> dict[Key, dict[str, Any]]:
    """Consistent BatchGetItem of (pk, sk) keys, 100 per call, retrying unprocessed keys (`on_call` is
    told of each call). Returns the items found, by key."""
    out: dict[Key, dict[str, Any]] = {}
    pending = [item_key(k) for k in dict.fromkeys(keys)]
    while pending:
        batch, pending = pending[:100], pending[100:]
        request: dict[str, Any] = {table: {"Keys": batch, "ConsistentRead": True}}
        while request:
            if on_call is not None:
                on_call()
            resp = client.batch_get_item(RequestItems=request)
            for item in resp.get("Responses", {}).get(table, []):
                out[(item["pk"]["S"], item["sk"]["S"])] = item
            request = dict(resp.get("UnprocessedKeys") or {})
    return out


def all_items(read: Callable[..., Any], **request: Any) -> Iterator[dict[str, Any]]:
    """Every item a Query or Scan returns (`read`: the client's `query` or `scan`), page after page, each page
    fetched only when the caller iterates that far."""
    while True:
        resp = read(**request)
        yield from resp.get("Items", [])
        if "LastEvaluatedKey" not in resp:
            return
        request = {**request, "ExclusiveStartKey": resp["LastEvaluatedKey"]}


def new_id() -> str:
    """A unique id for an item's sort key (audit entries)."""
    return uuid.uuid4().hex
