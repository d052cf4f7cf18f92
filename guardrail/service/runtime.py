"""Wiring: settings -> clients -> stores -> effects -> engine. Built once per process (Lambda container,
CLI run); every part gets its collaborators and the one clock at construction."""

from __future__ import annotations

import functools
import gc
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any

from guardrail.core.config import Settings, load_settings
from guardrail.service.engine import Engine
from guardrail.store import prebuilt
from guardrail.store.aws_clients import client
from guardrail.store.flags import FlagStore
from guardrail.store.ledger import Ledger

if TYPE_CHECKING:
    from guardrail.core.models import Flag
    from guardrail.service.effects import EffectReport, Effects
    from guardrail.service.engine import Committed
    from guardrail.service.notify import Poster

# The ledger's requests are built by our own code, the same shapes every time, and botocore validates them
# everywhere but in Lambda (tests, CLI, demo). Validating them again on every call in Lambda was 60% of the
# usage function's CPU, so there the DynamoDB client skips it; DynamoDB itself still rejects a bad request.
LAMBDA_CLIENT_CONFIG: dict[str, dict[str, Any]] = {"dynamodb": {"parameter_validation": False}}


def _in_lambda() -> bool:
    return bool(os.environ.get("AWS_LAMBDA_FUNCTION_NAME"))


def _client_config(service: str) -> dict[str, Any]:
    return LAMBDA_CLIENT_CONFIG.get(service, {}) if _in_lambda() else {}


def own_client(service: str) -> Any:
    """A client the runtime makes for itself (never one a caller injected): in Lambda without a second
    validation, and the ledger's transactions sent as the JSON they are built as (store/prebuilt.py)."""
    config = _client_config(service)
    made = client(service, **config)
    if service == "dynamodb":
        prebuilt.register(made, validate=config.get("parameter_validation", True))
    return made


class DeferredEffects:
    """The runtime's `Effects`, built when first needed: a transition won, an unknown model to alert, a
    handler or tool that applies or reads effects. Most usage events need none, and building them imports
    the target, hold, IAM and notification modules (a cold start's 5-10 ms)."""

    def __init__(self, make: Callable[[], Effects]) -> None:
        self._make = make
        self._effects: Effects | None = None
        self._lock = threading.Lock()

    def get(self) -> Effects:
        effects = self._effects
        if effects is None:
            with self._lock:
                if self._effects is None:
                    self._effects = self._make()
                effects = self._effects
        return effects

    def apply(self, committed: Committed) -> Flag:  # the engine's EffectsApplier
        return self.get().apply(committed)


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    deferred_effects: DeferredEffects
    clients: dict[str, Any]

    @property
    def effects(self) -> Effects:
        return self.deferred_effects.get()

    def client(self, service: str) -> Any:
        if service not in self.clients:
            self.clients[service] = own_client(service)
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
                pool[service] = own_client(service)
            return pool[service]

        return get

    dynamodb = lazy("dynamodb")()
    ledger = Ledger(dynamodb, settings.table_name, request_ttl_days=settings.request_ttl_days, now=now)
    flags = FlagStore(dynamodb, settings.table_name, now=now, dry_run=settings.dry_run)

    def make_effects() -> Effects:
        from guardrail.service import notify
        from guardrail.service.effects import Effects
        from guardrail.service.messages import BurnRate
        from guardrail.store.breakdown import top_spenders

        notifier = notify.Notifier(
            topic_arn=settings.topic_arn,
            slack_secret_arn=settings.slack_secret_arn,
            sns_factory=lazy("sns"),
            secrets_factory=lazy("secretsmanager"),
            post=post or notify.http_post,
            buttons=settings.slack_buttons,
        )
        return Effects(
            flags,
            lambda_factory=lazy("lambda"),
            iam_factory=lazy("iam"),
            notifier=notifier,
            dry_run=settings.dry_run,
            own_functions=settings.own_functions,
            burn_rate=BurnRate(ledger, settings.zone, now),
            leaders=partial(top_spenders, dynamodb, settings.table_name),
            on_report=on_report,
        )

    effects = DeferredEffects(make_effects)
    engine = Engine(
        settings,
        dynamodb=dynamodb,
        bedrock_factory=lazy("bedrock"),
        now=now,
        effects=effects,
        ledger=ledger,
        flags=flags,
    )
    return Runtime(settings=settings, engine=engine, deferred_effects=effects, clients=pool)


class ProcessRuntime:
    """The runtime of this process (a Lambda container, a CLI run): settings read once, clients reused.

    Built on first use from the environment; an embedded run (the demo, on its simulated clock) installs
    one built for it instead, so nothing is patched onto a runtime after it was built."""

    def __init__(self) -> None:
        self._runtime: Runtime | None = None
        self._lock = threading.Lock()
        self._settled = False

    def settle(self) -> None:
        """After every handled event (each handler's `finally`). Once per process: what the first event
        loaded (botocore's models, the clients, genai-prices, pydantic's validators: about 100,000 objects)
        lives as long as the process, so it is moved out of the cyclic collector's reach (`gc.freeze`).
        Otherwise every full collection walks it again: 30-60% of a 1,000-record batch's CPU. Then the
        collector runs again if the cold start paused it (handlers/__init__.py)."""
        if not self._settled:
            self._settled = True
            gc.freeze()
        gc.enable()

    def __call__(self) -> Runtime:
        runtime = self._runtime
        if runtime is None:
            with self._lock:
                if self._runtime is None:
                    from guardrail.service.observability import record_effects

                    self._runtime = build(on_report=record_effects)
                runtime = self._runtime
        return runtime

    def install(self, runtime: Runtime) -> None:
        self._runtime = runtime

    def cache_clear(self) -> None:
        """Forget the runtime: the next call builds one from the environment again."""
        self._runtime = None


default_runtime = ProcessRuntime()

Handler = Callable[[Any, Any], Any]


def settles(handler: Handler) -> Handler:
    """A Lambda handler (the outermost decorator) after which the process settles, failed or not: so the
    collector a cold start paused always runs again (`ProcessRuntime.settle`)."""

    @functools.wraps(handler)
    def settled(event: Any, context: Any) -> Any:
        try:
            return handler(event, context)
        finally:
            default_runtime.settle()

    return settled
