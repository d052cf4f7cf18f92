"""A writer that dies between two DynamoDB calls: the n-th TransactWriteItems (counting from 1) raises
`Crash`, either before it is sent or after it committed (the reply lost with the process)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest


class Crash(Exception):
    """The process stopped here (Lambda timeout, out of memory, a killed container)."""


class CrashAt:
    def __init__(self, client: Any, call: int, *, after: bool) -> None:
        self.client = client
        self.call = call
        self.after = after
        self.seen = 0
        self.fired = False
        event = "after-call" if after else "before-call"
        self._event = f"{event}.dynamodb.TransactWriteItems"
        client.meta.events.register(self._event, self._hook, unique_id="tests-crash-at")

    def _hook(self, **_: Any) -> None:
        self.seen += 1
        if self.seen == self.call and not self.fired:
            self.fired = True
            raise Crash(f"writer died {'after' if self.after else 'before'} transaction {self.call}")

    def remove(self) -> None:
        self.client.meta.events.unregister(self._event, unique_id="tests-crash-at")


@contextmanager
def dies(client: Any, call: int, *, after: bool) -> Iterator[CrashAt]:
    """The writer on `client` dies at its `call`-th TransactWriteItems inside the block, which must end with
    that `Crash`; the hook is gone afterwards either way."""
    crash = CrashAt(client, call, after=after)
    try:
        with pytest.raises(Crash):
            yield crash
    finally:
        crash.remove()


def count_transactions(client: Any) -> list[int]:
    """A live count of TransactWriteItems sent by `client` (a one-item list, incremented per call)."""
    seen = [0]

    def hook(**_: Any) -> None:
        seen[0] += 1

    client.meta.events.register("before-call.dynamodb.TransactWriteItems", hook, unique_id="tests-count-transactions")
    return seen
