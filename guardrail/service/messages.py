"""The one builder of alert messages (transitions, schedule repairs, reconciliation) and the burn rate
they quote."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from guardrail.core.models import ESCALATION_LEVELS, RATE_WINDOW, Budget, Level, Rearm, ScopeTotals, reset_command
from guardrail.core.windows import BURN_BUCKETS, window_for
from guardrail.service.notify import AlertMessage
from guardrail.store.ledger import Ledger

Burn = tuple[Decimal, int]  # USD per hour, over how many minutes


class BurnRate:
    """USD per hour over the last few five-minute buckets of a scope (read from the ledger)."""

    def __init__(
        self, ledger: Ledger, zone: ZoneInfo, now: Callable[[], datetime], buckets: int = BURN_BUCKETS
    ) -> None:
        self.ledger = ledger
        self.zone = zone
        self.now = now
        self.buckets = buckets

    def __call__(self, scope: str) -> Burn:
        now = self.now()
        keys = [
            (scope, window_for(now - timedelta(minutes=5 * i), RATE_WINDOW, self.zone)) for i in range(self.buckets)
        ]
        spent = sum((t.spend for t in self.ledger.totals(keys).values()), Decimal(0))
        minutes = max(1, int((now - keys[-1][1].start).total_seconds() // 60))
        return spent * 60 / minutes, minutes


def _top(spend: dict[str, Decimal], n: int = 3) -> list[tuple[str, Decimal]]:
    return sorted(spend.items(), key=lambda kv: kv[1], reverse=True)[:n]


def alert_message(
    *,
    scope: str,
    from_level: Level,
    to_level: Level,
    budget: Budget,
    totals: ScopeTotals,
    reason: str,
    actions: list[str],
    dry_run: bool,
    rearm: Rearm | None = None,
    burn: Burn | None = None,
) -> AlertMessage:
    """Everything on-call needs about one scope: spend against thresholds, why, burn rate and projection,
    top spenders, what was done, and the reset command."""
    rate, minutes = burn if burn is not None else (None, 0)
    return AlertMessage(
        scope=scope,
        from_level=from_level,
        to_level=to_level,
        window=totals.window.kind,
        spend=totals.spend,
        thresholds={lvl: budget.thresholds.for_level(lvl) for lvl in ESCALATION_LEVELS},
        reason=reason,
        burn_rate_per_hour=rate,
        burn_minutes=minutes,
        top={dim + "s": _top(totals.spend_by(dim)) for dim in ("model", "app", "caller")},
        actions=actions,
        dry_run=dry_run,
        reset_command=reset_command(scope),
        baseline=rearm.baseline_spend if rearm and rearm.window_key == totals.window.key else Decimal(0),
    )
