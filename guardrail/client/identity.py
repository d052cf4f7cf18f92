"""The caller identity a guarded client reports: given, or its own AWS identity (STS
GetCallerIdentity, resolved once, lazily, on the reporting thread, and cached).

The invocation log names the caller by `identity.arn`; a client report with the same ARN counts towards
the same `caller:*` budgets. An empty caller would hide the traffic from those budgets until the log's
copy corrects it (guardrail.store.copies keeps the log's identity when it arrives).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mypy_boto3_sts import STSClient

logger = logging.getLogger("guardrail.client")
RETRY_AFTER_SECONDS = 300.0


def _default_sts() -> STSClient:
    from guardrail.store import aws_clients

    sts: STSClient = aws_clients.client("sts", connect_timeout=1, max_attempts=2)  # short: it is only a label
    return sts


class CallerIdentity:
    def __init__(
        self, given: str | None, sts_factory: Callable[[], STSClient] | None, timer: Callable[[], float]
    ) -> None:
        self._arn = given
        self._factory = sts_factory or _default_sts
        self._timer = timer
        self._failed_at: float | None = None
        self._lock = threading.Lock()

    @property
    def known(self) -> str:
        """What is known now, never blocking (admission on the caller's thread)."""
        return self._arn or ""

    def arn(self) -> str:
        """The caller ARN; resolved at the first report. A failed lookup reports "" (the log still names
        the caller) and is tried again after a while, not on every report."""
        if self._arn is not None:
            return self._arn
        with self._lock:
            if self._arn is not None:
                return self._arn
            if self._failed_at is not None and self._timer() - self._failed_at < RETRY_AFTER_SECONDS:
                return ""
            try:
                self._arn = str(self._factory().get_caller_identity()["Arn"])
            except Exception as exc:  # reporting must go on without it
                self._failed_at = self._timer()
                logger.warning("guardrail: could not resolve the caller identity (%s); reporting without it", exc)
                return ""
            return self._arn
