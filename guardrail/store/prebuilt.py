"""TransactWriteItems bodies written as JSON directly: the ledger builds its items in DynamoDB's wire format
already, so botocore's shape-by-shape serialisation (and its endpoint parameter search over every item) is
pure cost: about half of the usage function's CPU.

Registered on the runtime's own DynamoDB client (service/runtime.py), never a caller's, two event handlers
swap the request body. At `before-parameter-build` (the idempotency token filled in as botocore would) the
full parameters are validated when the client validates (tests, CLI, demo: once, here) and dumped to JSON
(UTF-8), and botocore is left a one-item copy to serialise; at `before-call` the real body replaces that
copy's. Parameters JSON cannot hold keep botocore's path.
"""

from __future__ import annotations

import json
import uuid
import weakref
from functools import partial
from typing import Any

OPERATIONS = ("TransactWriteItems",)
_BODY = "guardrail_prebuilt_body"
_REGISTERED: weakref.WeakSet[Any] = weakref.WeakSet()
_EMPTY_ITEMS = b'"TransactItems":[]'


def accepts_text(client: Any) -> bool:
    """Whether `client` takes transaction items already rendered as JSON text (str items: see `_build`)."""
    return client in _REGISTERED


def as_params(items: list[Any]) -> list[Any]:
    """Items as any botocore client takes them: JSON text parsed back (for a client not registered here)."""
    return [json.loads(item) if isinstance(item, str) else item for item in items]


def register(client: Any, *, validate: bool) -> None:
    """Idempotent. Only for a client the guardrail made itself (the runtime's), never a caller's: it changes
    how that client sends TransactWriteItems. `validate`: whether the client validates its parameters (then
    the full request is validated here, once)."""
    _REGISTERED.add(client)
    build = partial(_build, validate=validate)
    for operation in OPERATIONS:
        client.meta.events.register(
            f"before-parameter-build.dynamodb.{operation}", build, unique_id=f"guardrail-prebuilt-build-{operation}"
        )
        client.meta.events.register(
            f"before-call.dynamodb.{operation}", _send, unique_id=f"guardrail-prebuilt-send-{operation}"
        )


def _build(params: dict[str, Any], model: Any, context: dict[str, Any], validate: bool, **_: Any) -> None:
    """Items may be dicts or JSON text (str: rendered by guardrail.store.ledger_items, which skips both the
    dicts and their serialisation on the batch path's hottest items)."""
    items = params.get("TransactItems")
    if not isinstance(items, list) or len(items) < 2:
        if isinstance(items, list):
            params["TransactItems"] = as_params(items)
        return
    for name in model.idempotent_members:  # botocore's own handler runs after this, more specific one
        params.setdefault(name, str(uuid.uuid4()))
    texts = any(isinstance(item, str) for item in items)
    if validate:
        from botocore.validate import validate_parameters

        full = {**params, "TransactItems": as_params(items)} if texts else params
        validate_parameters(full, model.input_shape)  # raises ParamValidationError, as botocore would
    from pydantic_core import PydanticSerializationError, to_json

    try:
        # Rust-side JSON, 3x json.dumps; bytes (a binary attribute) as base64, as botocore writes a blob.
        if texts:
            rendered = [
                item.encode() if isinstance(item, str) else to_json(item, bytes_mode="base64") for item in items
            ]
            rest = to_json({**params, "TransactItems": []}, bytes_mode="base64")
            body = rest.replace(_EMPTY_ITEMS, b'"TransactItems":[' + b",".join(rendered) + b"]", 1)
        else:
            body = to_json(params, bytes_mode="base64")
    except (PydanticSerializationError, TypeError, ValueError):
        params["TransactItems"] = as_params(items)
        return  # not plain JSON: botocore serialises it
    context[_BODY] = body
    params["TransactItems"] = as_params(items[:1])  # what botocore still serialises (and searches for endpoints)


def _send(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
    body = context.pop(_BODY, None)
    if body is not None:
        params["body"] = body
