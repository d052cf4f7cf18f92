"""Target functions' reserved concurrency: the one adapter every caller (effects, schedule, status, demo)
reads and changes it through.

A reading says one of three things explicitly: no reservation ("none", which is not 0), N, or unreadable
with the reason. Lambda's GetFunctionConcurrency answers without `ReservedConcurrentExecutions` when the
function has no reservation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from guardrail.core.text import shell_quote

if TYPE_CHECKING:
    from mypy_boto3_lambda import LambdaClient


@dataclass(frozen=True, slots=True)
class Reservation:
    """One reading of a function's reserved concurrency."""

    value: int | None = None  # None: no reservation (when readable)
    error: str = ""  # non-empty: it could not be read, and why
    missing: bool = False  # the function does not exist

    @property
    def readable(self) -> bool:
        return not self.error

    @property
    def stopped(self) -> bool:
        return self.readable and self.value == 0

    def describe(self) -> str:
        if self.error:
            return f"unreadable ({self.error})"
        return describe_saved(self.value)

    def for_json(self) -> int | str | None:
        """status --json: N, "none", or null when unreadable."""
        if self.error:
            return None
        return "none" if self.value is None else self.value


def describe_saved(saved: int | None) -> str:
    return "none" if saved is None else str(saved)


def aws_error(exc: BaseException) -> str:
    """AWS's code and message of a failed call, on one line (no traceback, no request ids)."""
    response: Any = getattr(exc, "response", None)
    if isinstance(response, dict):
        err = response.get("Error", {})
        return f"{err.get('Code', type(exc).__name__)}: {err.get('Message', '')}".strip()
    return f"{type(exc).__name__}: {exc}"


def not_found(exc: BaseException) -> bool:
    """The function does not exist (deleted, or never there)."""
    response: Any = getattr(exc, "response", None)
    return isinstance(response, dict) and response.get("Error", {}).get("Code") == "ResourceNotFoundException"


def restore_cli(name: str, saved: int | None) -> str:
    """The AWS CLI command that puts back a saved reservation by hand."""
    quoted = shell_quote(name)  # a target name comes from settings, but a pasted command runs what it shows
    if saved is None:
        return f"aws lambda delete-function-concurrency --function-name {quoted}"
    return f"aws lambda put-function-concurrency --function-name {quoted} --reserved-concurrent-executions {saved}"


class Concurrency:
    """Reads and sets reserved concurrency through one lazily created Lambda client (the function kind of
    target; `role_deny.RoleDeny` is the role kind, and `target_kinds.Targets` picks one per target)."""

    stopped_label = "at 0"
    noun = "reserved concurrency"

    def __init__(self, lambda_factory: Callable[[], LambdaClient]) -> None:
        self._factory = lambda_factory
        self._client: LambdaClient | None = None

    @property
    def client(self) -> LambdaClient:
        if self._client is None:
            self._client = self._factory()
        return self._client

    def read(self, name: str) -> Reservation:
        try:
            resp = self.client.get_function_concurrency(FunctionName=name)
        except Exception as exc:
            return Reservation(error=aws_error(exc), missing=not_found(exc))
        return Reservation(value=resp.get("ReservedConcurrentExecutions"))

    def stop(self, name: str) -> None:
        """Reserved concurrency 0 (raises on failure)."""
        self.client.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)

    def restore(self, name: str, saved: int | None) -> None:
        """Put back exactly what was saved: "none" deletes the reservation (raises on failure)."""
        if saved is None:
            self.client.delete_function_concurrency(FunctionName=name)
        else:
            self.client.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=saved)

    # -- what this kind of target says and how it is put back by hand --------------------------------

    def not_found(self, exc: BaseException) -> bool:
        return not_found(exc)

    def conflict(self, reading: Any) -> str:
        """A function found at 0 before any hold: that 0 is its pre-guardrail state, saved like any other."""
        return ""

    def describe_saved(self, saved: int | None) -> str:
        return describe_saved(saved)

    def stop_text(self, name: str) -> str:
        return f"reserved concurrency 0 on {name}"

    def repair_text(self, name: str) -> str:
        return f"reserved concurrency 0 again on {name}"

    def restore_help(self, name: str, saved: int | None) -> str:
        return (
            "Free unreserved concurrency (the account keeps at least 10-100 unreserved) or restore "
            f"by hand: {restore_cli(name, saved)}, then run the reset again"
        )
