"""The embedded AWS (moto) used by `guardrail demo`, `guardrail replay` and the tests.

moto's TransactWriteItems deep-copies the whole table once per item of the transaction (for rollback),
which makes a 100-item transaction on a table of a few thousand items take seconds. Real DynamoDB has
no such cost; we make moto copy each table once per transaction instead. Behaviour is unchanged.
"""

from __future__ import annotations

import contextlib
import copy
import threading
from collections.abc import Iterator
from typing import Any

_state = threading.local()
_patched = False
_patch_lock = threading.Lock()


class _CopyOncePerTransaction:
    """Stands in for the `copy` module inside moto's DynamoDB models."""

    def __getattr__(self, name: str) -> Any:
        return getattr(copy, name)

    @staticmethod
    def deepcopy(obj: Any, memo: Any = None) -> Any:
        cache = getattr(_state, "cache", None)
        if cache is None:
            return copy.deepcopy(obj, memo)
        key = id(obj)
        if key not in cache:
            cache[key] = copy.deepcopy(obj, memo)
        return cache[key]


def speed_up_moto_transactions() -> None:
    global _patched
    with _patch_lock:
        if _patched:
            return
        from moto.dynamodb import models

        original = models.DynamoDBBackend.transact_write_items

        def transact_write_items(self: Any, transact_items: Any) -> Any:
            _state.cache = {}
            try:
                return original(self, transact_items)
            finally:
                _state.cache = None

        models.copy = _CopyOncePerTransaction()  # type: ignore[attr-defined,assignment]
        models.DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]
        _normalise_number_add()
        _patched = True


def _normalise_number_add() -> None:
    """moto stores an ADD result as `str(Decimal)`, so a counter corrected back to exactly zero holds
    `0E-7`, and its next ADD fails (`int("0E-7")`). Real DynamoDB normalises numbers; so do we."""
    from decimal import Decimal

    from moto.dynamodb.models.dynamo_type import DynamoType

    original = DynamoType.__add__

    def add(self: Any, other: Any) -> Any:
        if self.is_number() and other.is_number():
            total = Decimal(self.value) + Decimal(other.value)
            return DynamoType({"N": format(total.normalize() if total else Decimal(0), "f")})
        return original(self, other)

    DynamoType.__add__ = add  # type: ignore[method-assign]


def create_function(lam: Any, role: str, name: str, reserved: int | None) -> None:
    """A Lambda function on the embedded AWS (moto never runs it), optionally with reserved concurrency."""
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("app.py", "def handler(event, context):\n    return {}\n")
    lam.create_function(
        FunctionName=name, Runtime="python3.12", Role=role, Handler="app.handler", Code={"ZipFile": buf.getvalue()}
    )
    if reserved is not None:
        lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=reserved)


@contextlib.contextmanager
def embedded_aws(region: str = "us-east-1") -> Iterator[None]:
    """Fake credentials and moto for every AWS service, for the duration of the block."""
    import os

    from moto import mock_aws

    speed_up_moto_transactions()
    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")}
    os.environ.update(
        {"AWS_ACCESS_KEY_ID": "embedded", "AWS_SECRET_ACCESS_KEY": "embedded", "AWS_DEFAULT_REGION": region}
    )
    try:
        with mock_aws():
            yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
