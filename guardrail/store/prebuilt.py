"""TransactWriteItems bodies written as JSON directly: the ledger builds its items in DynamoDB's wire format
already, so botocore's shape-by-shape serialisation (and its endpoint parameter search over every item) is
pure cost: about half of the usage function's CPU.

Registered on a DynamoDB client, two event handlers swap the request body. At `before-parameter-build`
(the idempotency token filled in as botocore would) the full parameters are validated when the client
validates (tests, CLI: once, here) and dumped to JSON (UTF-8), and botocore is left a one-item copy to serialise;
at `before-call` the real body replaces that copy's. Parameters JSON cannot hold keep botocore's path.
"""

from __future__ import annotations

import uuid
from functools import partial
from typing import Any

OPERATIONS = ("TransactWriteItems",)
_BODY = "guardrail_prebuilt_body"


def register(client: Any) -> None:
    """Idempotent; anything that is not a botocore client (a test double, None) is left alone."""
    events = getattr(getattr(client, "meta", None), "events", None)
    if events is None or not hasattr(events, "register"):
        return
    build = partial(_build, validate=_validates(client))
    for operation in OPERATIONS:
        events.register(
            f"before-parameter-build.dynamodb.{operation}", build, unique_id=f"guardrail-prebuilt-build-{operation}"
        )
        events.register(f"before-call.dynamodb.{operation}", _send, unique_id=f"guardrail-prebuilt-send-{operation}")


def _validates(client: Any) -> bool:
    """Does the client validate its parameters? `Config(parameter_validation=False)` is not kept in
    `client.meta.config`; botocore wraps a validating client's serializer. Unknown: validate."""
    from botocore.serialize import Serializer

    serializer = getattr(client, "_serializer", None)
    return not isinstance(serializer, Serializer)


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
