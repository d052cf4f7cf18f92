"""`guardrail`: the on-call command line. A thin adapter: rules live in the engine, status, replay and demo.

Exit codes: 0 done; 1 the command ran but something needs attention (nothing to reset, a restore AWS
refused, a reset not confirmed); 2 it could not run (bad arguments or settings, no credentials, no table).
Every error is one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, TextIO

from pydantic import ValidationError

from guardrail.core.errors import CliError, ConfigError, GuardrailError
from guardrail.core.text import one_line

if TYPE_CHECKING:
    from guardrail.service.runtime import Runtime

PROG = "guardrail"
OK, ATTENTION, CANNOT_RUN = 0, 1, 2


# -- argument types ------------------------------------------------------------------------------------

_DURATION = re.compile(r"^\s*(\d+)\s*([smhd])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def duration(text: str) -> timedelta:
    found = _DURATION.match(text)
    if not found:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 30m, 2h or 1d")
    return timedelta(**{_UNITS[found.group(2)]: int(found.group(1))})


def aware_time(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO time like 2026-11-22T18:00:00Z") from None
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} needs a time zone, e.g. 2026-11-22T18:00:00Z")
    return value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Bedrock cost guardrail: see the state, read the audit trail, reset, replay, demo.",
        epilog="Uses your own AWS credentials and the GUARDRAIL_* settings (see README: Configuration).",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("status", help="every scope: spend vs thresholds, level, downgrades, targets")
    s.add_argument("--json", action="store_true", help='print {"scopes": [...]} (money as decimal strings)')

    h = sub.add_parser("history", help="the audit trail, newest first")
    h.add_argument("--scope", help="only this scope, e.g. global or app:chat-api")
    h.add_argument("--actor", help="only entries whose actor contains this text")
    h.add_argument("--action", help="only entries whose action contains this text (e.g. reset, shutdown)")
    h.add_argument("--since", type=duration, help="only the last 30m / 2h / 1d")
    h.add_argument("--limit", type=int, default=20, help="at most this many entries (default 20)")
    h.add_argument("--json", action="store_true", help="print a JSON list")

    r = sub.add_parser("reset", help="restore every effect of a scope, with a reason for the audit trail")
    r.add_argument("--scope", default="global", help="the scope to reset (default global)")
    r.add_argument("--reason", help="what was fixed; required, it goes into the audit trail")
    r.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    r.add_argument(
        "--rearm",
        choices=("from-spend", "from-zero"),
        default="from-spend",
        help="from-spend (default): thresholds count again from the spend at reset time; "
        "from-zero: the window's whole spend counts again (escalates at once if it is over)",
    )
    snooze = r.add_mutually_exclusive_group()
    snooze.add_argument("--snooze-for", type=duration, help="no escalation for this long, e.g. 2h")
    snooze.add_argument("--snooze-until", type=aware_time, help="no escalation before this time (ISO, with zone)")
    r.add_argument("--json", action="store_true", help="print the result as JSON")

    rp = sub.add_parser("replay", help="replay exported invocation-log records against the budgets (no AWS)")
    rp.add_argument("file", help="JSON lines or the gzip export (- for standard input)")
    rp.add_argument("--thresholds", help="override GUARDRAIL_THRESHOLDS, e.g. alert=5,throttle=10,shutdown=25")
    rp.add_argument("--window", choices=("hour", "day", "month"), help="override GUARDRAIL_WINDOW")
    rp.add_argument("--timezone", help="override GUARDRAIL_TIMEZONE")
    rp.add_argument("--budgets", help="override GUARDRAIL_BUDGETS (JSON list)")
    rp.add_argument("--lag", type=int, default=30, help="seconds from a request to its effect (default 30)")
    rp.add_argument("--json", action="store_true", help="print the report as JSON")

    d = sub.add_parser("demo", help="a scripted runaway-agent incident on an embedded AWS (no account needed)")
    d.add_argument("--chart", default="guardrail-demo-spend.svg", help="where to write the spend chart (SVG)")
    d.add_argument("--pace", type=float, default=None, help="seconds to pause between timeline steps")
    return p


# -- commands ------------------------------------------------------------------------------------------


def _runtime() -> Runtime:
    from guardrail.core.config import load_settings
    from guardrail.service.runtime import build

    return build(load_settings())


def cmd_status(args: argparse.Namespace, out: TextIO, runtime: Runtime) -> int:
    from guardrail.tools import status

    document = status.status_document(runtime)
    print(json.dumps(document, indent=2) if args.json else status.render_status(document), file=out)
    return OK


def cmd_history(args: argparse.Namespace, out: TextIO, runtime: Runtime) -> int:
    from guardrail.tools import status

    since = datetime.now(UTC) - args.since if args.since else None
    filt = status.HistoryFilter(
        scope=args.scope, actor=args.actor, action=args.action, since=since, limit=max(1, args.limit)
    )
    entries = status.history(runtime, filt)
    if args.json:
        print(json.dumps([status.audit_to_dict(e) for e in entries], indent=2), file=out)
    else:
        print(status.render_history(entries), file=out)
    return OK


def caller_identity(runtime: Runtime) -> str:
    """The actor of a reset: the caller's own AWS identity (never typed in)."""
    return str(runtime.client("sts").get_caller_identity()["Arn"])


def cmd_reset(args: argparse.Namespace, out: TextIO, runtime: Runtime) -> int:
    from guardrail.service.oncall import ResetRequest, check_scope, reset
    from guardrail.tools import status

    reason = (args.reason or "").strip()
    if not reason:
        raise CliError('reset refused: --reason "what was fixed" is required; it goes into the audit trail')
    snooze_until = args.snooze_until
    if args.snooze_for is not None:
        snooze_until = datetime.now(UTC) + args.snooze_for
    if snooze_until is not None and snooze_until <= datetime.now(UTC):
        raise CliError("reset refused: --snooze-until is in the past")
    check_scope(runtime, args.scope)  # before any read: a malformed scope never reaches DynamoDB
    preview = status.reset_preview(
        runtime, args.scope, rearm_from_zero=args.rearm == "from-zero", snooze_until=snooze_until
    )
    if preview.nothing_to_do and snooze_until is None:
        raise CliError(
            f"nothing to reset: scope {args.scope} is normal and holds no targets (guardrail status shows every scope)",
            ATTENTION,
        )
    actor = caller_identity(runtime)
    if not (args.json and args.yes):  # --json --yes: standard output is the JSON result alone
        print("\n".join(preview.lines()), file=out)
        print(f"  actor: {one_line(actor)}", file=out)
        print(f"  reason: {one_line(reason)}", file=out)
    if not args.yes:
        try:
            out.write("Reset now? [y/N] ")
            out.flush()
            answer = input()
        except EOFError:
            answer = ""
        if answer.strip().lower() not in ("y", "yes"):
            raise CliError("reset not confirmed: nothing changed (pass --yes to skip the question)", ATTENTION)
    # A scope that is normal already but holds refused restores goes through the same audited reset:
    # the engine retries those restores.
    request = ResetRequest(scope=args.scope, reason=reason, actor=actor, rearm=args.rearm, snooze_until=snooze_until)
    result = reset(runtime, request)
    if args.json:
        print(json.dumps(result, indent=2, default=str), file=out)
    else:
        print(status.render_reset(result), file=out)
    return OK if result["ok"] else ATTENTION


def cmd_replay(args: argparse.Namespace, out: TextIO) -> int:
    from guardrail.core.config import load_settings
    from guardrail.tools.replay import render, replay

    overrides = {
        k: v
        for k, v in {
            "thresholds": args.thresholds,
            "window": args.window,
            "timezone": args.timezone,
            "budgets": args.budgets,
        }.items()
        if v is not None
    }
    settings = load_settings(**overrides)
    if args.file != "-":
        from pathlib import Path

        if not Path(args.file).is_file():
            raise CliError(f"replay: no such file: {args.file}")
    report = replay(args.file, settings, lag_seconds=max(0, args.lag))
    print(json.dumps(report.to_dict(), indent=2) if args.json else render(report, settings), file=out)
    return OK


def cmd_demo(args: argparse.Namespace, out: TextIO) -> int:
    from guardrail.tools.demo import run_demo

    pace = args.pace if args.pace is not None else (0.08 if out.isatty() else 0.0)
    result = run_demo(chart_path=args.chart, out=out, pace=pace)
    return OK if result.ok else ATTENTION


# -- errors --------------------------------------------------------------------------------------------


def _aws_error_line(exc: Exception) -> tuple[str, int] | None:
    """One line for what botocore raises; None when it is not an AWS error."""
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
            return (
                f"the guardrail table was not found ({message or code}): check GUARDRAIL_TABLE_NAME and "
                "AWS_REGION, or deploy the stack (docs/deploy.md)",
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


def _one_line(text: str) -> str:
    return one_line("; ".join(part.strip() for part in text.splitlines() if part.strip()))


def main(argv: list[str] | None = None, *, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        args = parser().parse_args(argv)
    except SystemExit as exc:  # argparse printed usage and the error
        return int(exc.code) if isinstance(exc.code, int) else CANNOT_RUN
    try:
        if args.command == "replay":
            return cmd_replay(args, out)
        if args.command == "demo":
            return cmd_demo(args, out)
        runtime = _runtime()
        commands: dict[str, Callable[[argparse.Namespace, TextIO, Runtime], int]] = {
            "status": cmd_status,
            "history": cmd_history,
            "reset": cmd_reset,
        }
        return commands[args.command](args, out, runtime)
    except CliError as exc:
        print(f"{PROG}: {_one_line(str(exc))}", file=err)
        return exc.code
    except ConfigError as exc:
        print(f"{PROG}: {_one_line(str(exc))}", file=err)
        return CANNOT_RUN
    except GuardrailError as exc:  # ScopeNotFound and friends: their message says what to do
        print(f"{PROG}: {_one_line(str(exc))}", file=err)
        return CANNOT_RUN
    except ValidationError as exc:  # a reset request the on-call model refuses (e.g. a 3,000-character reason)
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'input'}: {e['msg']}" for e in exc.errors())
        print(f"{PROG}: refused: {_one_line(problems)}", file=err)
        return CANNOT_RUN
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=err)
        return 130
    except Exception as exc:
        line = _aws_error_line(exc)
        if line is None:
            raise
        print(f"{PROG}: {_one_line(line[0])}", file=err)
        return line[1]


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
