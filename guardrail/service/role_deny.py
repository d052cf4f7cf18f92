"""Role targets: a reversible IAM deny on a caller's role, for Bedrock callers that are not Lambda functions
(ECS tasks, EC2, EKS pods, notebooks, agent runtimes). The adapter of this target kind, beside
`targets.Concurrency` for functions (docs/enforcement.md, "Role targets").

Shutdown puts one inline policy with a name the guardrail owns (`POLICY_NAME`) on the role; restore deletes
exactly that policy. The role's other policies are never read or touched. The state saved before a stop is
always "no deny": a policy of our name found on a role no hold of ours accounts for is a configuration
error (`conflict`), never overwritten.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from guardrail.core.config import role_name
from guardrail.core.text import shell_quote
from guardrail.service.targets import aws_error

IAMClient = Any  # no IAM stubs are installed; the four calls below are the whole surface

POLICY_NAME = "bedrock-cost-guardrail-deny"
# What invokes a model with the role's own credentials, by IAM action (docs/enforcement.md lists why each):
# InvokeModel also authorizes Converse, StartAsyncInvoke and InvokeModelWithBidirectionalStream;
# InvokeModelWithResponseStream also authorizes ConverseStream. Batch jobs, agents, inline agents, flows and
# knowledge-base generation run models under a service role, so only their entry points stop them.
DENIED_ACTIONS = (
    "bedrock:InvokeModel",
    "bedrock:InvokeModelWithResponseStream",
    "bedrock:CreateModelInvocationJob",
    "bedrock:InvokeAgent",
    "bedrock:InvokeInlineAgent",
    "bedrock:InvokeFlow",
    "bedrock:RetrieveAndGenerate",
)
STATEMENT_ID = "BedrockCostGuardrailShutdown"
DENY_DOCUMENT: dict[str, Any] = {
    "Version": "2012-10-17",
    "Statement": [{"Sid": STATEMENT_ID, "Effect": "Deny", "Action": list(DENIED_ACTIONS), "Resource": "*"}],
}


@dataclass(frozen=True, slots=True)
class DenyReading:
    """One reading of a role's guardrail-named policy: absent, ours (the deny in force), or another document."""

    present: bool = False
    ours: bool = False  # the document is exactly the guardrail's deny
    error: str = ""
    missing: bool = False  # the role does not exist
    value: int | None = None  # the state a first holder saves: always "no deny"

    @property
    def readable(self) -> bool:
        return not self.error

    @property
    def stopped(self) -> bool:
        return self.readable and self.present and self.ours

    def describe(self) -> str:
        if self.error:
            return f"unreadable ({self.error})"
        if not self.present:
            return "no deny"
        return "denied" if self.ours else f"a policy named {POLICY_NAME} that is not the guardrail's deny"

    def for_json(self) -> str | None:
        if self.error:
            return None
        return "denied" if self.stopped else "other" if self.present else "none"


def _no_such_entity(exc: BaseException) -> str | None:
    response: Any = getattr(exc, "response", None)
    if isinstance(response, dict) and response.get("Error", {}).get("Code") == "NoSuchEntity":
        return str(response["Error"].get("Message", ""))
    return None


def _role_gone(exc: BaseException) -> bool:
    """IAM answers NoSuchEntity both for a missing role and for a missing policy; only the policy's message
    names the policy."""
    message = _no_such_entity(exc)
    return message is not None and POLICY_NAME not in message


class RoleDeny:
    """Puts, reads and deletes the guardrail's deny through one lazily created IAM client."""

    stopped_label = "denied"
    noun = f"the guardrail's deny policy ({POLICY_NAME})"

    def __init__(self, iam_factory: Callable[[], IAMClient]) -> None:
        self._factory = iam_factory
        self._client: IAMClient | None = None

    @property
    def client(self) -> IAMClient:
        if self._client is None:
            self._client = self._factory()
        return self._client

    def read(self, name: str) -> DenyReading:
        try:
            resp = self.client.get_role_policy(RoleName=role_name(name), PolicyName=POLICY_NAME)
        except Exception as exc:
            if _no_such_entity(exc) is not None and not _role_gone(exc):
                return DenyReading()
            return DenyReading(error=aws_error(exc), missing=_role_gone(exc))
        document: Any = resp["PolicyDocument"]
        if isinstance(document, str):  # botocore decodes it; a raw (URL-encoded) JSON string is read too
            document = json.loads(unquote(document))
        return DenyReading(present=True, ours=document.get("Statement") == DENY_DOCUMENT["Statement"])

    def stop(self, name: str) -> None:
        """Put the deny (idempotent: a put replaces only the policy of our name)."""
        self.client.put_role_policy(
            RoleName=role_name(name), PolicyName=POLICY_NAME, PolicyDocument=json.dumps(DENY_DOCUMENT)
        )

    def restore(self, name: str, saved: int | None) -> None:
        """Delete exactly the guardrail's policy; one already gone is the restored state (raises otherwise)."""
        try:
            self.client.delete_role_policy(RoleName=role_name(name), PolicyName=POLICY_NAME)
        except Exception as exc:
            if _no_such_entity(exc) is not None and not _role_gone(exc):
                return
            raise

    def not_found(self, exc: BaseException) -> bool:
        return _role_gone(exc)

    def conflict(self, reading: Any) -> str:
        """A policy of our name before any hold of ours: someone else's. Never overwritten."""
        if not isinstance(reading, DenyReading) or not reading.present:
            return ""
        return (
            f"refused: the role already has an inline policy named {POLICY_NAME} that the guardrail did not put "
            "there (configuration error; the guardrail never overwrites it). Rename or delete that policy; the "
            "next shutdown denies the role"
        )

    def describe_saved(self, saved: int | None) -> str:
        return "no deny"

    def stop_text(self, name: str) -> str:
        return f"Bedrock invoke deny on role {name} (inline policy {POLICY_NAME})"

    def repair_text(self, name: str) -> str:
        return f"Bedrock deny re-applied on role {name} (it had been removed)"

    def restore_help(self, name: str, saved: int | None) -> str:
        return f"Remove it by hand: {restore_cli(name)}, then run the reset again"


def restore_cli(name: str) -> str:
    """The AWS CLI command that removes the guardrail's deny by hand."""
    return f"aws iam delete-role-policy --role-name {shell_quote(role_name(name))} --policy-name {POLICY_NAME}"
