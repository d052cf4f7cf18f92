"""The Lambda-side product: engine, parsing of invocation logs and usage events, effects (notifications,
reserved concurrency), alarms, the schedule run, on-call reset, runtime wiring and observability.

Entered through `handlers/`; never imported by the guarded client.
"""

__all__ = ["Engine", "Runtime", "build", "default_runtime"]

from guardrail.service.engine import Engine
from guardrail.service.runtime import Runtime, build, default_runtime
