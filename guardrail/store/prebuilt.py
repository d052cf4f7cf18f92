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

import uuid
from functools import partial
from typing import Any

OPERATIONS = ("TransactWriteItems",)
_BODY = "guardrail_prebuilt_body"


def register(client: Any, *, validate: bool) -> None:
    """Idempotent. Only for a client the guardrail made itself (the runtime's), never a caller's: it changes
    how that client sends TransactWriteItems. `validate`: whether the client validates its parameters (then
    the full request is validated here, once)."""
    build = partial(_build, validate=validate)
    for operation in OPERATIONS:
        client.meta.events.register(
            f"before-parameter-build.dynamodb.{operation}", build, unique_id=f"guardrail-prebuilt-build-{operation}"
        )
        client.meta.events.register(
            f"before-call.dynamodb.{operation}", _send, unique_id=f"guardrail-prebuilt-send-{operation}"
        )


def _build(params: dict[str, Any], model: Any, context: dict[str, Any], validate: bool, **_: Any) -> None:
    items = params.get("TransactItems")
    if not isinstance(items, list) or len(items) < 2:
        return
    for name in model.idempotent_members:  # botocore's own handler runs after this, more specific one
        params.setdefault(name, str(uuid.uuid4()))
    if validate:
        from botocore.validate import validate_parameters

        validate_parameters(params, model.input_shape)  # raises ParamValidationError, as botocore would
    from pydantic_core import PydanticSerializationError, to_json

    try:
        # Rust-side JSON, 3x json.dumps; bytes (a binary attribute) as base64, as botocore writes a blob.
        body = to_json(params, bytes_mode="base64")
    except (PydanticSerializationError, TypeError, ValueError):
        return  # not plain JSON: botocore serialises it
    context[_BODY] = body
    params["TransactItems"] = items[:1]  # what botocore still serialises (and searches for endpoints)


def _send(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
    body = context.pop(_BODY, None)
    if body is not None:
        params["body"] = body
