"""Domain errors. Each says what went wrong and what to do about it."""

from __future__ import annotations


class GuardrailError(Exception):
    """Base of every error this package raises on purpose."""


class ConfigError(GuardrailError):
    """A setting is missing or malformed; the message names the variable and the accepted form."""


class PricingError(GuardrailError):
    """A model id could not be resolved to a price (and no ceiling applies)."""


class FlagConflict(GuardrailError):
    """Another invocation moved the flag first (conditional write lost). Not a failure: re-read."""


class GuardrailShutdown(GuardrailError):
    """Raised by the guarded client instead of calling Bedrock while a scope is shut down."""

    def __init__(self, scope: str, level: str, reason: str, reset_command: str) -> None:
        self.scope = scope
        self.level = level
        self.reason = reason
        self.reset_command = reset_command
        super().__init__(
            f"Bedrock calls are stopped for scope {scope!r} (level {level}): {reason}. "
            f"On-call can restore with: {reset_command}"
        )
