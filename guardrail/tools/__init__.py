"""On-call and local tools: the `guardrail` CLI (status, history, reset, replay, demo), the incident demo
and the embedded AWS it runs on. Not shipped in the Lambda asset."""

__all__ = ["main"]

from guardrail.tools.cli import main
