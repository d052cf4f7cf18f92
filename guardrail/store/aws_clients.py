"""boto3 client factories. Nothing is created at import time; callers inject clients or call these."""

from __future__ import annotations

from typing import Any

# Short timeouts: the guardrail must never hang a caller or a batch on a slow dependency.
DEFAULT_CONNECT_TIMEOUT = 2
DEFAULT_READ_TIMEOUT = 5


def client(service: str, *, region: str | None = None, session: Any = None, **config: Any) -> Any:
    """A client of `session` (a boto3 Session; None: boto3's default session)."""
    import boto3
    from botocore.config import Config

    cfg = Config(
        connect_timeout=config.pop("connect_timeout", DEFAULT_CONNECT_TIMEOUT),
        read_timeout=config.pop("read_timeout", DEFAULT_READ_TIMEOUT),
        retries={"mode": "standard", "max_attempts": config.pop("max_attempts", 3)},
        **config,
    )
    maker = boto3 if session is None else session
    return maker.client(service, region_name=region, config=cfg)


def quick_session() -> Any:
    """A new boto3 session whose models load without botocore's scan of every service and into plain dicts
    (store/aws_models.py): what the runtime makes its own clients with in Lambda."""
    import boto3
    import botocore.session

    from guardrail.store.aws_models import create_loader

    core = botocore.session.get_session()
    core.register_component("data_loader", create_loader(core.get_config_variable("data_path")))
    return boto3.Session(botocore_session=core)
