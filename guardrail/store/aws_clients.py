"""boto3 client factories. Nothing is created at import time; callers inject clients or call these."""

from __future__ import annotations

from typing import Any

# Short timeouts: the guardrail must never hang a caller or a batch on a slow dependency.
DEFAULT_CONNECT_TIMEOUT = 2
DEFAULT_READ_TIMEOUT = 5


def client(service: str, *, region: str | None = None, **config: Any) -> Any:
    import boto3
    from botocore.config import Config

    cfg = Config(
        connect_timeout=config.pop("connect_timeout", DEFAULT_CONNECT_TIMEOUT),
        read_timeout=config.pop("read_timeout", DEFAULT_READ_TIMEOUT),
        retries={"mode": "standard", "max_attempts": config.pop("max_attempts", 3)},
        **config,
    )
    return boto3.client(service, region_name=region, config=cfg)  # type: ignore[call-overload]
