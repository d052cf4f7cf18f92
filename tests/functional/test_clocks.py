"""Items 6 and 7: record time picks the window a record counts in, only the clock picks the current window;
records too far ahead are quarantined; a snooze is bounded."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta

import pytest

import guardrail.service.oncall  # noqa: F401
import handlers.reset
from guardrail.core.models import Level
from guardrail.service.runtime import build
from guardrail.tools.cli import main
from tests.support.factories import log_line, logs_event, record
from tests.support.world import World, batch


def stamped(at: datetime, prefix: str, n: int = 1) -> dict[str, object]:
    return logs_event(
        [log_line(record(f"{prefix}-{i}", input_tokens=100_000, output_tokens=10_000, at=at)) for i in range(n)]
    )


def test_a_record_stamped_tomorrow_is_quarantined_and_moves_nothing(world: World) -> None:
    world.usage(batch("a", 21))  # $10.395: throttle
    assert world.flag().level == Level.THROTTLE
    world.sns_messages()
    before = world.flag()

    result = world.usage(stamped(datetime.now(UTC) + timedelta(days=1), "tomorrow"))
    assert result["recorded"] == 0 and len(result["quarantined"]) == 1 and result["transitions"] == []
    assert world.flag() == before and world.sns_messages() == []
    (kept,) = build().engine.ledger.quarantined(datetime.now(UTC))
    assert "ahead of the clock" in kept["reason"] and "GUARDRAIL_MAX_CLOCK_SKEW_SECONDS" in kept["reason"]
    assert "tomorrow-0" in kept["raw"]

    # The next record of today changes nothing either: no second alert.
    assert world.usage(batch("b", 1))["transitions"] == []
    assert world.sns_messages() == []


def test_a_record_of_the_next_window_within_skew_counts_there_and_ends_no_shutdown(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GUARDRAIL_MAX_CLOCK_SKEW_SECONDS", str(2 * 86400))
    monkeypatch.setenv(
        "GUARDRAIL_BUDGETS", json.dumps([{"scope": "global", "targets": ["chat-api"], "shutdown_auto_clears": True}])
    )
    world.usage(batch("a", 60))
    assert world.flag().level == Level.SHUTDOWN and world.concurrency("chat-api") == 0
    world.sns_messages()

    tomorrow = datetime.now(UTC) + timedelta(days=1)
    result = world.usage(stamped(tomorrow, "t", 2))
    assert result["recorded"] == 2 and result["transitions"] == []
    assert world.flag().level == Level.SHUTDOWN and world.concurrency("chat-api") == 0
    assert world.sns_messages() == []
    counters = build().engine.ledger.counters_for_scope("global")
    assert any(tomorrow.date().isoformat() in c["sk"]["S"] and c["requests"]["N"] == "2" for c in counters)


def test_an_unbounded_snooze_is_refused_by_the_reset_handler(world: World) -> None:
    world.usage(batch("a", 60))
    before = world.flag()
    world.sns_messages()
    result = handlers.reset.handler(
        {"scope": "global", "reason": "load test", "actor": "alice", "snooze_until": "9999-12-31T00:00:00Z"},
        world.ctx,
    )
    assert not result["ok"]
    assert "more than 24 h away" in result["error"] and "GUARDRAIL_MAX_SNOOZE_HOURS" in result["error"]
    assert world.flag() == before and world.concurrency("chat-api") == 0 and world.sns_messages() == []

    ok = handlers.reset.handler(
        {
            "scope": "global",
            "reason": "load test",
            "actor": "alice",
            "snooze_until": (datetime.now(UTC) + timedelta(hours=23)).isoformat(),
        },
        world.ctx,
    )
    assert ok["ok"] and world.concurrency("chat-api") == 7


@pytest.mark.parametrize("option", [["--snooze-until", "9999-12-31T00:00:00Z"], ["--snooze-for", "25h"]])
def test_an_unbounded_snooze_is_refused_by_the_cli(world: World, option: list[str]) -> None:
    world.usage(batch("a", 60))
    before = world.flag()
    out, err = io.StringIO(), io.StringIO()
    code = main(["reset", "--scope", "global", "--reason", "load test", "--yes", *option], out=out, err=err)
    assert code != 0
    assert "longest snooze is 24 h" in err.getvalue(), err.getvalue()
    assert world.flag() == before and world.concurrency("chat-api") == 0
