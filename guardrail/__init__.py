"""Real-time cost guardrail for Amazon Bedrock.

Two products share this package (docs/architecture.md):
- the Lambda-side service (`guardrail.service`, entered through `handlers/`), which prices every request,
  records it once (`guardrail.store`) and escalates;
- the app-side guarded client (`guardrail.client`), which teams import into their own code.
`guardrail.core` is the pure domain both use; `guardrail.tools` is the on-call CLI and the demo.
Importing `guardrail` loads only the errors below.
"""

__all__ = ["ConfigError", "GuardrailError", "GuardrailShutdown"]

from guardrail.core.errors import ConfigError, GuardrailError, GuardrailShutdown
