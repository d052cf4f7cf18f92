"""The pure domain: models, money, windows, scopes, policy, downgrades, prices, settings, errors.

No boto3, no I/O (an import-linter contract). Every other layer builds on it.
"""

__all__ = [
    "Budget",
    "ConfigError",
    "Flag",
    "GuardrailError",
    "GuardrailShutdown",
    "Level",
    "ScopeNotFound",
    "ScopeTotals",
    "Settings",
    "UsageRecord",
    "load_settings",
    "usd",
]

from guardrail.core.config import Settings, load_settings
from guardrail.core.errors import ConfigError, GuardrailError, GuardrailShutdown, ScopeNotFound
from guardrail.core.models import Budget, Flag, Level, ScopeTotals, UsageRecord, usd
