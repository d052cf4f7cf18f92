"""One adapter interface over every kind of shutdown target: a Lambda function (reserved concurrency 0,
`targets.Concurrency`) or an IAM role (an inline deny, `role_deny.RoleDeny`). Holds, effects, the schedule
and status go through `Targets`, so the shared-target rules (saved once, held per scope, restored by the
last holder, repaired on drift) are written once for both kinds.
"""

from __future__ import annotations

from typing import Protocol

from guardrail.core.config import is_role
from guardrail.service.role_deny import RoleDeny
from guardrail.service.targets import Concurrency


class Reading(Protocol):
    """One reading of a target: stopped or not, the state a first holder would save, or why unreadable."""

    @property
    def value(self) -> int | None: ...
    @property
    def error(self) -> str: ...
    @property
    def missing(self) -> bool: ...
    @property
    def readable(self) -> bool: ...
    @property
    def stopped(self) -> bool: ...
    def describe(self) -> str: ...
    def for_json(self) -> int | str | None: ...


class TargetKind(Protocol):
    stopped_label: str  # "stays <label>: still held by ..."
    noun: str  # what is read and changed, for failures ("could not read <noun>")

    def read(self, name: str) -> Reading: ...
    def stop(self, name: str) -> None: ...
    def restore(self, name: str, saved: int | None) -> None: ...
    def not_found(self, exc: BaseException) -> bool: ...
    def conflict(self, reading: Reading) -> str: ...
    def describe_saved(self, saved: int | None) -> str: ...
    def stop_text(self, name: str) -> str: ...
    def repair_text(self, name: str) -> str: ...
    def restore_help(self, name: str, saved: int | None) -> str: ...


class Targets:
    """Picks the adapter of a target by its canonical name (a role ARN, or a function name)."""

    def __init__(self, concurrency: Concurrency, roles: RoleDeny) -> None:
        self.concurrency = concurrency
        self.roles = roles

    def kind(self, name: str) -> TargetKind:
        return self.roles if is_role(name) else self.concurrency

    def kind_name(self, name: str) -> str:
        return "role" if is_role(name) else "function"

    def read(self, name: str) -> Reading:
        return self.kind(name).read(name)

    def stop(self, name: str) -> None:
        self.kind(name).stop(name)

    def restore(self, name: str, saved: int | None) -> None:
        self.kind(name).restore(name, saved)
