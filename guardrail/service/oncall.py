"""On-call operations shared by the reset handler and the CLI."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from guardrail.core.errors import ScopeNotFound
from guardrail.core.text import one_line
from guardrail.service.effects import EffectReport
from guardrail.service.runtime import Runtime
from guardrail.store.flags import flag_to_dict


class ResetRequest(BaseModel):
    """`{"scope": "global", "reason": "...", "actor": "..."}` plus optional re-arm options.

    `actor` is who AWS verified (the CLI's STS identity, the function URL's signed caller); `note` is what a
    request claimed about itself, kept beside it in the audit trail, never as the actor."""

    model_config = ConfigDict(extra="forbid")
    scope: str = "global"
    reason: Annotated[str, Field(min_length=1, max_length=2000)]
    actor: Annotated[str, Field(min_length=1, max_length=512)]
    note: Annotated[str, Field(max_length=512)] = ""
    rearm: Literal["from-spend", "from-zero"] = "from-spend"
    snooze_until: datetime | None = None

    @field_validator("reason", "actor")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank: it goes into the audit trail")
        return value.strip()

    @field_validator("snooze_until")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("snooze_until needs a time zone, e.g. 2026-11-22T18:00:00Z")
        return value


MAX_SCOPE_CHARS = 256  # far below DynamoDB's key limits; real scopes are a dimension and a short value


def check_scope(runtime: Runtime, scope: str) -> None:
    """Refuse, with a message that says why, a scope no reset may name: too long, one no budget governs, a
    selector (`app:*`), or a scope of a wildcard budget that never spent nor holds a flag (a reset would
    create a flag item for it). Exact budget scopes and `global` are always accepted. Odd characters are
    not refused: an app name with a newline that spent is a real scope on-call must be able to reset."""
    text = one_line(scope)
    if not scope or len(scope) > MAX_SCOPE_CHARS:
        raise ScopeNotFound(f"reset refused: a scope is 1 to {MAX_SCOPE_CHARS} characters (got {len(scope)})")
    engine = runtime.engine
    exact = {b.selector for b in engine.resolver.budgets if not b.selector.endswith(":*")}
    if scope in exact:
        return
    dimension, _, value = scope.partition(":")
    if not value or value == "*":
        raise ScopeNotFound(
            f"reset refused: '{text}' is not a scope; name one, e.g. {dimension or 'app'}:chat-api "
            "(guardrail status lists every scope)"
        )
    engine.budget(scope)  # ScopeNotFound: no budget governs it (the message lists the budgets)
    if engine.flags.get(scope).version == 0 and not engine.ledger.counters_for_scope(scope, limit=1):
        raise ScopeNotFound(
            f"reset refused: scope '{text}' has never spent and holds no flag: nothing to reset "
            "(check the spelling; guardrail status lists every scope)"
        )


def reset(runtime: Runtime, request: ResetRequest) -> dict[str, Any]:
    """Restore every effect of the scope, audit, notify and re-arm. Returns what happened."""
    check_scope(runtime, request.scope)
    before_reports = len(runtime.effects.reports)
    committed = runtime.engine.reset(
        scope=request.scope,
        actor=request.actor,
        reason=f"{request.reason} [note: {request.note}]" if request.note else request.reason,
        snooze_until=request.snooze_until,
        rearm_from_zero=request.rearm == "from-zero",
    )
    reports: list[EffectReport] = runtime.effects.reports[before_reports:]
    after = runtime.engine.flags.get(request.scope)
    return {
        "ok": not any(r.failures for r in reports),
        "scope": request.scope,
        "from_level": committed.transition.from_level.label,
        "to_level": after.level.label,
        "restored": [a for r in reports for a in r.actions],
        "failures": [f for r in reports for f in r.failures],
        "notification_failures": [f for r in reports for f in r.notification_failures],
        "rearm": flag_to_dict(after)["rearm"],
        "flag": flag_to_dict(after),
    }
