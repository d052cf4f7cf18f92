"""Domain errors. Each says what went wrong and what to do about it."""

from __future__ import annotations


class GuardrailError(Exception):
    """Base of every error this package raises on purpose."""


class ConfigError(GuardrailError):
    """A setting is missing or malformed; the message names the variable and the accepted form."""


class PricingError(GuardrailError):
    """A model id could not be resolved to a price (and no ceiling applies)."""


class ScopeNotFound(GuardrailError):
    """No budget governs the named scope."""


class LedgerError(GuardrailError):
    """The ledger could not record a batch; nothing of the failed chunk was counted."""


class AlarmEventError(GuardrailError):
    """An alarm event that is none of the three known shapes."""


class CliError(GuardrailError):
    """The on-call CLI refuses or fails; the message is the one line it prints, `code` its exit code."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


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


class ResetRefused(GuardrailError):
    """A reset asked for something the guardrail will not do (e.g. a snooze past the configured maximum)."""
