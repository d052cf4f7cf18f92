"""`guardrail`: the on-call command line. A thin adapter: rules live in the engine, status, replay and demo.

Exit codes: 0 done; 1 the command ran but something needs attention (nothing to reset, a restore AWS
refused, a reset not confirmed); 2 it could not run (bad arguments or settings, no credentials, no table).
Every error is one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, TextIO

from pydantic import ValidationError

from guardrail.core.errors import CliError, ConfigError, GuardrailError
from guardrail.core.policy import snooze_refusal
from guardrail.core.text import one_line
from guardrail.tools.cli_support import (
    CANNOT_RUN,
    PROG,
    aws_error_line,
    dash_values,
    error_line,
    region_from_aws_region,
    warn_unknown_settings,
    where,
)

if TYPE_CHECKING:
    from guardrail.service.runtime import Runtime

OK, ATTENTION = 0, 1
BROKEN_PIPE = 141  # what a shell reports for a command whose reader went away (128 + SIGPIPE)
PACKAGE = "bedrock-cost-guardrail"
# shtab's completion of a path (shtab.FILE), spelled out so that building the parser never imports shtab.
FILE_COMPLETION = {"bash": "_shtab_compgen_files", "zsh": "_files", "tcsh": "f"}


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
    p.add_argument("--version", action="version", version=f"{PROG} {version()}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("status", help="every scope: spend vs thresholds, level, downgrades, targets")
    s.add_argument("--json", action="store_true", help='print {"scopes": [...]} (money as decimal strings)')

    h = sub.add_parser("history", help="the audit trail, newest first")
    h.add_argument("--scope", help="only this scope, e.g. global or app:chat-api")
    h.add_argument("--actor", help="only entries whose actor contains this text")
    h.add_argument("--action", help="only entries whose action contains this text (e.g. reset, shutdown, '->normal')")
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
    replay_file = rp.add_argument("file", help="JSON lines or the gzip export (- for standard input)")
    replay_file.complete = FILE_COMPLETION  # type: ignore[attr-defined]  # read by shtab
    rp.add_argument("--thresholds", help="override GUARDRAIL_THRESHOLDS, e.g. alert=5,throttle=10,shutdown=25")
    rp.add_argument("--window", choices=("hour", "day", "month"), help="override GUARDRAIL_WINDOW")
    rp.add_argument("--timezone", help="override GUARDRAIL_TIMEZONE")
    rp.add_argument("--budgets", help="override GUARDRAIL_BUDGETS (JSON list)")
    rp.add_argument("--lag", type=int, default=30, help="seconds from a request to its effect (default 30)")
    rp.add_argument("--json", action="store_true", help="print the report as JSON")

    d = sub.add_parser("demo", help="a scripted runaway-agent incident on an embedded AWS (no account needed)")
    d.add_argument("--chart", default="guardrail-demo-spend.svg", help="where to write the spend chart (SVG)")
    d.add_argument("--pace", type=float, default=None, help="seconds to pause between timeline steps")

    from guardrail.tools import prices

    prices.add_parser(sub)
    tb = sub.add_parser("table", help="make the guardrail's table for local or dev use (production: the stack)")
    tb_sub = tb.add_subparsers(dest="table_command", required=True, metavar="ACTION")
    tc = tb_sub.add_parser(
        "create",
        help="create the table with the guardrail's schema",
        description="Create the guardrail's DynamoDB table (pk/sk, on demand, TTL on expires_at) where your settings "
        "point: a dev account, DynamoDB Local or a moto server (--endpoint-url or AWS_ENDPOINT_URL_DYNAMODB).",
    )
    tc.add_argument("--table", help="table name (default GUARDRAIL_TABLE_NAME, else bedrock-guardrail)")
    tc.add_argument("--endpoint-url", help="a local DynamoDB, e.g. http://localhost:8000")

    c = sub.add_parser(
        "completion",
        help="print the shell completion script",
        description='bash: eval "$(guardrail completion bash)" in ~/.bashrc; '
        'zsh: guardrail completion zsh > "${fpath[1]}/_guardrail", then restart the shell',
    )
    c.add_argument("shell", choices=("bash", "zsh"))
    return p


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed(PACKAGE)
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "(not installed)"


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


def check_reset(args: argparse.Namespace) -> None:
    """Refuse bad reset arguments before the preview and before any AWS call (Region, credentials)."""
    from guardrail.service.oncall import ResetRequest

    reason = (args.reason or "").strip()
    if not reason:
        raise CliError('reset refused: --reason "what was fixed" is required; it goes into the audit trail')
    if args.snooze_for is not None:
        args.snooze_until = datetime.now(UTC) + args.snooze_for
    if args.snooze_until is not None and args.snooze_until <= datetime.now(UTC):
        raise CliError("reset refused: --snooze-until is in the past")
    try:  # the same model the reset itself uses; the actor is only known after an AWS call
        ResetRequest(scope=args.scope, reason=reason, actor="-", rearm=args.rearm, snooze_until=args.snooze_until)
    except ValidationError as exc:
        problems = "; ".join(f"--{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise CliError(f"reset refused: {problems}") from None


def cmd_reset(args: argparse.Namespace, out: TextIO, runtime: Runtime) -> int:
    from guardrail.service.oncall import ResetRequest, check_scope, reset
    from guardrail.tools import status

    reason, snooze_until = args.reason.strip(), args.snooze_until  # checked by check_reset before AWS
    check_scope(runtime, args.scope)  # before any read: a malformed scope never reaches DynamoDB
    refusal = snooze_refusal(snooze_until, runtime.engine.now(), runtime.engine.max_snooze)
    if refusal:  # before the preview and the question: nothing is asked that would be refused
        raise CliError(refusal.replace("snooze_until", "--snooze-until/--snooze-for", 1))
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
    settings = load_settings(flag_names={k: f"--{k}" for k in overrides}, **overrides)
    if args.file != "-":
        from pathlib import Path

        if not Path(args.file).is_file():
            raise CliError(f"replay: no such file: {args.file}")
    try:
        report = replay(args.file, settings, lag_seconds=max(0, args.lag))
    except (OSError, EOFError) as exc:  # unreadable, or a gzip file cut short
        raise CliError(f"replay: cannot read {args.file}: {exc}") from None
    if report.records == 0 and report.duplicates == 0:
        from guardrail.tools.replay_input import no_records_hint

        raise CliError(f"replay: {no_records_hint(report)}")
    print(json.dumps(report.to_dict(), indent=2) if args.json else render(report, settings), file=out)
    return OK


def cmd_table(args: argparse.Namespace, out: TextIO) -> int:
    import boto3

    from guardrail.core.config import load_settings
    from guardrail.store.table import create_table

    name = args.table or load_settings().table_name
    dynamodb = boto3.client("dynamodb", endpoint_url=args.endpoint_url)
    place = f"in Region {dynamodb.meta.region_name} at {dynamodb.meta.endpoint_url}"
    try:
        create_table(dynamodb, name)
    except dynamodb.exceptions.ResourceInUseException:
        raise CliError(f"table {name!r} already exists {place}: nothing changed", ATTENTION) from None
    print(f"created table {name!r} {place} (pk/sk, on demand, TTL on expires_at)", file=out)
    if name != load_settings().table_name:
        print(f"next: export GUARDRAIL_TABLE_NAME={name}", file=out)
    print("next: `guardrail status` reads it; production tables come from the stack (docs/deploy.md)", file=out)
    return OK


def cmd_completion(args: argparse.Namespace, out: TextIO) -> int:
    try:
        import shtab
    except ImportError:
        raise CliError(f"completion needs shtab: pip install '{PACKAGE}[cli]'") from None
    print(shtab.complete(parser(), shell=args.shell), file=out)
    return OK


def cmd_demo(args: argparse.Namespace, out: TextIO) -> int:
    from importlib.util import find_spec

    if find_spec("moto") is None:
        raise CliError(f"the demo runs on moto: pip install '{PACKAGE}[demo]' (or `make demo` in the repository)")
    from guardrail.tools.demo import run_demo

    pace = args.pace if args.pace is not None else (0.08 if out.isatty() else 0.0)
    result = run_demo(chart_path=args.chart, out=out, pace=pace)
    return OK if result.ok else ATTENTION


def main(argv: list[str] | None = None, *, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        code = _run(sys.argv[1:] if argv is None else argv, out, err)
        out.flush()  # a reader that went away shows here, not as a traceback at exit
        return code
    except BrokenPipeError:  # `guardrail history | head`: the reader has what it wanted
        if out is sys.stdout:  # the interpreter flushes stdout again at exit: point it at /dev/null
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return BROKEN_PIPE


def _run(argv: list[str], out: TextIO, err: TextIO) -> int:
    try:
        # argparse writes --help/--version to sys.stdout and usage errors to sys.stderr: send them where asked.
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            args = parser().parse_args(dash_values(argv))
    except SystemExit as exc:  # argparse printed usage and the error
        return int(exc.code) if isinstance(exc.code, int) else CANNOT_RUN
    runtime: Runtime | None = None
    region_from_aws_region()
    try:
        if args.command == "completion":
            return cmd_completion(args, out)
        if args.command != "demo":  # the demo sets its own settings
            warn_unknown_settings(err)
        if args.command == "replay":
            return cmd_replay(args, out)
        if args.command == "demo":
            return cmd_demo(args, out)
        if args.command == "prices":
            from guardrail.tools.prices import cmd_prices

            return cmd_prices(args, out)
        if args.command == "table":
            return cmd_table(args, out)
        if args.command == "reset":
            check_reset(args)
        runtime = _runtime()
        commands: dict[str, Callable[[argparse.Namespace, TextIO, Runtime], int]] = {
            "status": cmd_status,
            "history": cmd_history,
            "reset": cmd_reset,
        }
        return commands[args.command](args, out, runtime)
    except CliError as exc:
        print(f"{PROG}: {error_line(str(exc))}", file=err)
        return exc.code
    except ConfigError as exc:
        print(f"{PROG}: {error_line(str(exc))}", file=err)
        return CANNOT_RUN
    except GuardrailError as exc:  # ScopeNotFound and friends: their message says what to do
        print(f"{PROG}: {error_line(str(exc))}", file=err)
        return CANNOT_RUN
    except ValidationError as exc:  # a reset request the on-call model refuses (e.g. a 3,000-character reason)
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'input'}: {e['msg']}" for e in exc.errors())
        print(f"{PROG}: refused: {error_line(problems)}", file=err)
        return CANNOT_RUN
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=err)
        return 130
    except Exception as exc:
        line = aws_error_line(exc, where(runtime))
        if line is None:
            raise
        print(f"{PROG}: {error_line(line[0])}", file=err)
        return line[1]


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
