"""Wiring: settings -> clients -> engine + effects. Built once per process (Lambda container, CLI run)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any

from guardrail import notify
from guardrail.aws import client
from guardrail.config import Settings, load_settings
from guardrail.effects import EffectReport, Effects
from guardrail.engine import Engine
from guardrail.notify import Notifier, Poster


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

    engine = Engine(settings, dynamodb=lazy("dynamodb")(), bedrock_factory=lazy("bedrock"), now=now)
    notifier = Notifier(
        topic_arn=settings.topic_arn,
        slack_secret_arn=settings.slack_secret_arn,
        sns_factory=lazy("sns"),
        secrets_factory=lazy("secretsmanager"),
        post=post or notify.http_post,
    )
    effects = Effects(
        engine.flags,
        lambda_factory=lazy("lambda"),
        notifier=notifier,
        dry_run=settings.dry_run,
        own_functions=settings.own_functions,
        burn_rate=engine.burn_rate,
        on_report=on_report,
    )
    engine.effects = effects
    return Runtime(settings=settings, engine=engine, effects=effects, clients=pool)


@cache
def default_runtime() -> Runtime:
    """The process-wide runtime of a Lambda container (settings read once, clients reused)."""
    from guardrail.observability import record_effects

    return build(on_report=record_effects)
