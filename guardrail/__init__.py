"""Real-time cost guardrail for Amazon Bedrock."""

from guardrail.exceptions import ConfigError, GuardrailError, GuardrailShutdown

__all__ = ["ConfigError", "GuardrailError", "GuardrailShutdown"]
