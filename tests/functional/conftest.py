"""Fixtures of the functional suites (moto worlds driven through handlers, CLI and guard())."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from guardrail.service.runtime import default_runtime
from tests.support.world import World


@pytest.fixture
def world(ddb: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    yield World(monkeypatch)
    default_runtime.cache_clear()
