"""Wiring: settings -> clients -> stores -> effects -> engine. Built once per process (Lambda container,
CLI run); every part gets its collaborators and the one clock at construction."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache, partial
from typing import Any

from guardrail.core.config import Settings, load_settings
from guardrail.service import notify
from guardrail.service.effects import EffectReport, Effects
from guardrail.service.engine import Engine
from guardrail.service.messages import BurnRate
from guardrail.service.notify import Notifier, Poster
from guardrail.store.aws_clients import client
from guardrail.store.breakdown import top_spenders
from guardrail.store.flags import FlagStore
from guardrail.store.ledger import Ledger


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    effects: Effects
    clients: dict[str, Any]

    def client(self, service: str) -> Any:
        if service not in self.clients:
            self.clients[service] = client(service)
        return self.clients[service]


def build(
    settings: Settings | None = None,
    *,
    clients: dict[str, Any] | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    post: Poster | None = None,
    on_report: Callable[[EffectReport], None] | None = None,
) -> Runtime:
    """Everything an entry point needs; `clients` may hold injected (moto/Stubber) clients by service."""
    settings = settings or load_settings()
    pool: dict[str, Any] = dict(clients or {})

    def lazy(service: str) -> Callable[[], Any]:
        def get() -> Any:
            if service not in pool:
                pool[service] = client(service)
            return pool[service]

        return get

    dynamodb = lazy("dynamodb")()
    ledger = Ledger(dynamodb, settings.table_name, request_ttl_days=settings.request_ttl_days, now=now)
    flags = FlagStore(dynamodb, settings.table_name, now=now, dry_run=settings.dry_run)
    notifier = Notifier(
        topic_arn=settings.topic_arn,
        slack_secret_arn=settings.slack_secret_arn,
        sns_factory=lazy("sns"),
        secrets_factory=lazy("secretsmanager"),
        post=post or notify.http_post,
    )
    effects = Effects(
        flags,
        lambda_factory=lazy("lambda"),
        notifier=notifier,
        dry_run=settings.dry_run,
        own_functions=settings.own_functions,
        burn_rate=BurnRate(ledger, settings.zone, now),
        leaders=partial(top_spenders, dynamodb, settings.table_name),
        on_report=on_report,
    )
    engine = Engine(
        settings,
        dynamodb=dynamodb,
        bedrock_factory=lazy("bedrock"),
        now=now,
        effects=effects,
        ledger=ledger,
        flags=flags,
    )
    return Runtime(settings=settings, engine=engine, effects=effects, clients=pool)


@cache
def default_runtime() -> Runtime:
    """The process-wide runtime of a Lambda container (settings read once, clients reused)."""
    from guardrail.service.observability import record_effects

    return build(on_report=record_effects)
