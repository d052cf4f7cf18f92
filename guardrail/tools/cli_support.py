"""The CLI's edges, as the person at the terminal meets them: AWS errors as one line that names what was
missing (table, Region), multi-line messages as one line, option values that start with "-", and a warning for
a `GUARDRAIL_` variable that is no setting (a typo is otherwise silently ignored)."""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, TextIO

from guardrail.core.text import one_line

if TYPE_CHECKING:
    from guardrail.service.runtime import Runtime

PROG = "guardrail"
CANNOT_RUN = 2
# Options whose value may start with "-" (`--action "->normal"`): argparse would take it for an option.
FREE_TEXT_OPTIONS = ("--action", "--actor", "--reason", "--scope")


# -- errors --------------------------------------------------------------------------------------------


def aws_error_line(exc: Exception, where: dict[str, str] | None = None) -> tuple[str, int] | None:
    """One line for what botocore raises; None when it is not an AWS error. `where`: table and Region."""
    try:
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            NoCredentialsError,
            NoRegionError,
            PartialCredentialsError,
        )
    except ImportError:  # pragma: no cover - boto3 is a dependency
        return None
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return (
            "no AWS credentials: the CLI acts as you; set AWS_PROFILE, run `aws sso login`, or export "
            "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY",
            CANNOT_RUN,
        )
    if isinstance(exc, NoRegionError):
        return "no AWS Region: set AWS_REGION (or AWS_DEFAULT_REGION) to the guardrail's Region", CANNOT_RUN
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        code = err.get("Code", "")
        message = err.get("Message", "")
        operation = exc.operation_name
        if code == "ResourceNotFoundException" and operation in _DYNAMODB_OPERATIONS:
            where = where or {}
            table, region = where.get("table", "?"), where.get("region", "?")
            return (
                f"the guardrail table was not found: no table {table!r} in Region {region} ({message or code}); "
                "check GUARDRAIL_TABLE_NAME and AWS_REGION, deploy the stack (docs/deploy.md), or for a local "
                "table run `guardrail table create`",
                CANNOT_RUN,
            )
        if code in ("ExpiredToken", "ExpiredTokenException", "UnrecognizedClientException", "InvalidClientTokenId"):
            return f"AWS rejected your credentials ({code}): refresh them (e.g. `aws sso login`)", CANNOT_RUN
        if code in ("AccessDenied", "AccessDeniedException"):
            return f"AWS denied {operation} to your identity: {message}", CANNOT_RUN
        return f"AWS {operation} failed: {code}: {message}", CANNOT_RUN
    if isinstance(exc, BotoCoreError):
        return f"AWS call failed: {exc}", CANNOT_RUN
    return None


_DYNAMODB_OPERATIONS = {
    "GetItem",
    "BatchGetItem",
    "Query",
    "Scan",
    "TransactWriteItems",
    "PutItem",
    "UpdateItem",
    "DescribeTable",
}


def error_line(text: str) -> str:
    """A multi-line message as one terminal line: "invalid configuration: A; B" (no separator after a colon),
    outside text in it escaped (guardrail.core.text.one_line)."""
    line = ""
    for part in filter(None, (p.strip() for p in text.splitlines())):
        line += (" " if line.endswith(":") else "; ") + part if line else part
    return one_line(line)


_OPTION = re.compile(r"--?[A-Za-z][\w-]*")


def dash_values(argv: list[str]) -> list[str]:
    """`--action "->normal"` as `--action=->normal`, so argparse does not take the value for an option."""
    out: list[str] = []
    for i, arg in enumerate(argv):
        follows = i > 0 and argv[i - 1] in FREE_TEXT_OPTIONS and out[-1] == argv[i - 1]
        if follows and arg.startswith("-") and not _OPTION.fullmatch(arg):
            out[-1] = f"{out[-1]}={arg}"
        else:
            out.append(arg)
    return out


def warn_unknown_settings(err: TextIO) -> None:
    from guardrail.core.config import unknown_variables

    for name, hint in unknown_variables(os.environ):
        print(f"{PROG}: warning: {name} is not a setting and is ignored" + (f"; {hint}" if hint else ""), file=err)


def where(runtime: Runtime | None) -> dict[str, str]:
    """The table and Region an AWS error is about, for the message."""
    table = runtime.settings.table_name if runtime else os.environ.get("GUARDRAIL_TABLE_NAME", "bedrock-guardrail")
    try:
        import boto3

        region = str(runtime.client("dynamodb").meta.region_name if runtime else boto3.session.Session().region_name)
    except Exception:  # the Region itself may be what is missing
        region = "?"
    return {"table": table, "region": region}


def region_from_aws_region() -> None:
    """AWS_REGION (what Lambda and the README set) as the Region: boto3 reads only AWS_DEFAULT_REGION, and
    AWS_REGION wins when both are set, as in the AWS CLI."""
    if os.environ.get("AWS_REGION"):
        os.environ["AWS_DEFAULT_REGION"] = os.environ["AWS_REGION"]
