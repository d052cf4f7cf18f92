"""The app-side product: wrap a boto3 `bedrock-runtime` client so that every call obeys the guardrail's
flags (downgrade at throttle, refuse at shutdown) and reports its usage within seconds.

    from guardrail.client import guard
    bedrock = guard(boto3.client("bedrock-runtime"), metadata={"app": "chat-api"})

Importing it never loads the Lambda-side service or the on-call tools (an import-linter contract).
"""

__all__ = [
    "ClientOptions",
    "EventSink",
    "GuardedBedrockClient",
    "GuardedStream",
    "GuardrailShutdown",
    "LedgerSink",
    "Usage",
    "guard",
]

from guardrail.client.guarded import GuardedBedrockClient, guard
from guardrail.client.options import ClientOptions
from guardrail.client.reporting import EventSink, LedgerSink
from guardrail.client.streams import GuardedStream
from guardrail.client.usage import Usage
from guardrail.core.errors import GuardrailShutdown
