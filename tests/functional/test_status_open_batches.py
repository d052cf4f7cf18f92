"""`status` shows ledger batches whose requests are recorded but not yet in the counters (a writer that
stopped between claiming and applying, guardrail.store.batches), until they are applied."""

from __future__ import annotations

import io
import json
from datetime import timedelta
from decimal import Decimal
from typing import Any

from guardrail.service.runtime import default_runtime
from guardrail.tools.cli import main
from tests.support.crash import dies
from tests.support.world import World, batch


def status() -> tuple[dict[str, Any], str]:
    out, text = io.StringIO(), io.StringIO()
    assert main(["status", "--json"], out=out) == 0
    assert main(["status"], out=text) == 0
    return json.loads(out.getvalue()), text.getvalue()


def test_a_batch_left_open_shows_until_it_is_applied(world: World) -> None:
    doc, text = status()
    assert list(doc) == ["scopes"] and "ledger:" not in text  # nothing open: the contract as it is
    # 150 records: two claim transactions, then the parts; the writer dies once both claims committed.
    with dies(default_runtime().client("dynamodb"), 2, after=True):
        world.usage(batch("open", 150))
    doc, text = status()
    assert doc["ledger"]["open_batches"] == 1 and doc["ledger"]["oldest_opened_at"]
    assert "ledger: 1 batch(es) of requests recorded but not yet in the totals above" in text
    (scope,) = [s for s in doc["scopes"] if s["scope"] == "global"]
    assert Decimal(scope["spend_usd"]) == 0  # recorded, not counted: what the line is there to say
    done, _ = default_runtime().engine.complete_open_batches(timedelta(0))  # what the schedule run does
    assert len(done) == 1
    doc, text = status()
    assert list(doc) == ["scopes"] and "ledger:" not in text
    (scope,) = [s for s in doc["scopes"] if s["scope"] == "global"]
    assert Decimal(scope["spend_usd"]) == Decimal("0.495") * 150
