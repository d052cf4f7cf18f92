"""Stepping through AWS calls: count the calls one thread makes through a runtime's clients, and pause or
crash it at the k-th (a crash is a BaseException, so no `except Exception` in the code under test can
mistake it for a failed call)."""

from __future__ import annotations

import threading
from typing import Any

from guardrail.service.runtime import Runtime

SERVICES = ("dynamodb", "lambda", "iam", "sns", "secretsmanager")


class Crash(BaseException):
    """The process died here."""


class Stepper:
    def __init__(self, runtime: Runtime) -> None:
        self.thread: threading.Thread | None = None  # only this thread is stepped
        self.at = 0  # the call to stop at (1-based); 0: never
        self.crash = False
        self.calls = 0
        self.paused = threading.Event()
        self.resume = threading.Event()
        for service in SERVICES:
            runtime.client(service).meta.events.register("before-call", self._before)

    def arm(self, thread: threading.Thread | None, at: int, *, crash: bool = False) -> None:
        self.thread, self.at, self.crash, self.calls = thread, at, crash, 0

    def paused_in(self, thread: threading.Thread) -> bool:
        """Wait until the stepped `thread` pauses at the armed call (True) or ends without reaching it
        (False). No wall-clock bound: a slow machine only makes it take longer."""
        while not self.paused.wait(0.02):
            if not thread.is_alive():
                return self.paused.is_set()
        return True

    def _before(self, **_: Any) -> None:
        if self.thread is None or threading.current_thread() is not self.thread:
            return
        self.calls += 1
        if self.calls != self.at:
            return
        if self.crash:
            raise Crash(f"crashed before AWS call {self.at}")
        self.paused.set()
        self.resume.wait(30)
