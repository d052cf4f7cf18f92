"""`guardrail demo`: a scripted runaway-agent incident through the real handlers on an embedded AWS.

A support agent on Claude Sonnet 4.5 (with prompt caching: every step re-reads its growing context from
the cache) starts looping at 02:42 and spawns sub-agents. Its calls go through the guarded client, which
reads the flag before each call: at throttle Sonnet becomes Haiku, at shutdown calls are refused. Every
30 simulated seconds the calls' invocation-log records reach `handlers.usage` as a CloudWatch Logs
subscription event; alerts go to SNS and to a (captured) Slack webhook; shutdown sets reserved
concurrency 0 on the target functions. At 03:04 on-call resets with `handlers.reset`.

Everything runs on moto in this process with a simulated clock, so it takes seconds, needs no account,
and leaves nothing behind but the chart.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import html
import io
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, TextIO

from guardrail.core.models import Level, UsageRecord, usd
from guardrail.tools.embedded_aws import create_function

SONNET = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
REGION = "us-east-1"
ACCOUNT = "123456789012"
TABLE = "guardrail-demo"
AGENT_FUNCTION = "support-agent"  # reserved concurrency 7
BATCH_FUNCTION = "summarizer"  # no reserved concurrency
OWN_FUNCTIONS = "guardrail-usage,guardrail-alarm,guardrail-reset,guardrail-schedule"
WEBHOOK = "https://hooks.slack.com/services/T0DEMO/B0DEMO/demo-not-a-secret"
ONCALL = f"arn:aws:sts::{ACCOUNT}:assumed-role/oncall/alice"
RESET_REASON = "support-agent loop fixed: max_steps=20 in v1.4.2"

TICK = timedelta(seconds=30)  # one log subscription delivery per tick
LOG_DELAY = timedelta(seconds=12)  # invocation logs reach CloudWatch Logs 5 to 30 s after the request
LOOP_START_TICK = 4  # 02:42
RESET_TICK = 48  # 03:04: on-call has read Slack and the status
LAST_TICK = 58  # 03:09


@dataclass(frozen=True)
class Call:
    """One Bedrock call an application tries to make."""

    app: str
    model_id: str
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int


def scripted_calls(tick: int) -> list[Call]:
    """What the applications try to call in one tick (before the guardrail has a say)."""
    calls = [Call("chat-api", SONNET, 1500, 300, 6000, 0) for _ in range(3)]
    if LOOP_START_TICK <= tick < RESET_TICK:
        workers = 4 if tick < 10 else 8 if tick < 16 else 12  # the loop spawns sub-agents
        for _worker in range(workers):
            for k in range(5):  # one step every 6 s; each step re-reads the whole context from the cache
                step = (tick - LOOP_START_TICK) * 5 + k
                calls.append(Call(AGENT_FUNCTION, SONNET, 150, 600, min(20_000 + 3_000 * step, 150_000), 3_000))
    elif tick >= RESET_TICK:  # fixed: a bounded agent again
        calls += [Call(AGENT_FUNCTION, SONNET, 150, 600, 20_000, 3_000) for _ in range(4)]
    return calls


def log_line(record: UsageRecord, function: str) -> str:
    """The ModelInvocationLog JSON Bedrock writes for a call."""
    return json.dumps(
        {
            "schemaType": "ModelInvocationLog",
            "schemaVersion": "1.0",
            "timestamp": record.timestamp.isoformat(),
            "accountId": ACCOUNT,
            "identity": {"arn": f"arn:aws:sts::{ACCOUNT}:assumed-role/{function}-role/{function}"},
            "region": REGION,
            "requestId": record.request_id,
            "operation": "Converse",
            "modelId": record.model_id,
            "input": {
                "inputContentType": "application/json",
                "inputTokenCount": record.input_tokens,
                "cacheReadInputTokenCount": record.cache_read_tokens,
                "cacheWriteInputTokenCount": record.cache_write_tokens,
            },
            "output": {"outputContentType": "application/json", "outputTokenCount": record.output_tokens},
            "requestMetadata": record.metadata,
        }
    )


def logs_event(lines: list[str], at: datetime) -> dict[str, Any]:
    """A CloudWatch Logs subscription event (gzip, base64) carrying invocation-log lines."""
    payload = {
        "messageType": "DATA_MESSAGE",
        "owner": ACCOUNT,
        "logGroup": "/aws/bedrock/modelinvocations",
        "logStream": "aws/bedrock/modelinvocations",
        "subscriptionFilters": ["guardrail-usage"],
        "logEvents": [
            {"id": str(i), "timestamp": int(at.timestamp() * 1000), "message": line} for i, line in enumerate(lines)
        ],
    }
    return {"awslogs": {"data": base64.b64encode(gzip.compress(json.dumps(payload).encode())).decode()}}


class _Context:
    """The Lambda context the handlers' Powertools decorators read."""

    def __init__(self, name: str) -> None:
        self.function_name = name
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = 256
        self.invoked_function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"
        self.aws_request_id = "demo"
        self.log_group_name = f"/aws/lambda/{name}"
        self.log_stream_name = "demo"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


class SimClock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


# -- output ------------------------------------------------------------------------------------------


def render_slack(payload: dict[str, Any]) -> list[str]:
    """A Slack Block Kit payload as it reads in the channel (bold and code marks dropped)."""

    def plain(text: str) -> str:
        return html.unescape(text.replace("*", "").replace("`", ""))

    lines: list[str] = []
    for block in payload.get("blocks", []):
        kind = block.get("type")
        if kind == "header":
            lines.append(plain(block["text"]["text"]).upper())
        elif kind == "section" and "fields" in block:
            cells = []
            for f in block["fields"]:
                label, _, value = plain(f["text"]).partition("\n")
                cells.append(f"{label}: {value}")
            for i in range(0, len(cells), 2):
                lines.append("   ".join(c.ljust(34) for c in cells[i : i + 2]).rstrip())
        elif kind == "section":
            lines += plain(block["text"]["text"]).splitlines()
        elif kind == "context":
            lines += [plain(e["text"]) for e in block.get("elements", [])]
    return lines


def boxed(lines: list[str], indent: str = "          ") -> list[str]:
    width = min(110, max(len(line) for line in lines) + 2)
    out = [indent + "┌" + "─" * width]
    out += [indent + "│ " + line for line in lines]
    out.append(indent + "└" + "─" * width)
    return out


@dataclass
class Point:
    at: datetime
    spend: Decimal  # the ledger's global spend today (with the guardrail)
    unguarded: Decimal  # what the same calls would have cost with no guardrail


@dataclass
class DemoResult:
    ok: bool = True
    levels: list[str] = field(default_factory=list)  # every transition, "normal -> alert", ...
    slack_messages: list[dict[str, Any]] = field(default_factory=list)
    sns_messages: int = 0
    reset: dict[str, Any] = field(default_factory=dict)
    concurrency_at_shutdown: dict[str, int | str | None] = field(default_factory=dict)
    concurrency_after_reset: dict[str, int | str | None] = field(default_factory=dict)
    downgraded_to: str = ""
    refused: int = 0
    chart_path: str = ""
    points: list[Point] = field(default_factory=list)
    events: list[tuple[datetime, str]] = field(default_factory=list)
    seconds: float = 0.0


# -- the world ---------------------------------------------------------------------------------------


@contextlib.contextmanager
def _demo_environment(topic: str, secret: str) -> Iterator[None]:
    values = {
        "GUARDRAIL_TABLE_NAME": TABLE,
        "GUARDRAIL_TOPIC_ARN": topic,
        "GUARDRAIL_SLACK_SECRET_ARN": secret,
        "GUARDRAIL_TARGET_FUNCTIONS": f"{AGENT_FUNCTION},{BATCH_FUNCTION}",
        "GUARDRAIL_OWN_FUNCTIONS": OWN_FUNCTIONS,
        "GUARDRAIL_THRESHOLDS": "alert=5,throttle=10,shutdown=25",
        "GUARDRAIL_WINDOW": "day",
        "GUARDRAIL_TIMEZONE": "UTC",
        "GUARDRAIL_MODE": "enforce",
    }
    cleared = [k for k in os.environ if k.startswith("GUARDRAIL_") and k not in values]
    saved = {k: os.environ.get(k) for k in [*values, *cleared]}
    for k in cleared:
        del os.environ[k]
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _concurrency(lam: Any, name: str) -> int | str | None:
    value = lam.get_function_concurrency(FunctionName=name).get("ReservedConcurrentExecutions")
    return "none" if value is None else int(value)


@contextlib.contextmanager
def _quiet_powertools() -> Iterator[None]:
    """The handlers log JSON and print EMF metrics to stdout, as in Lambda; the demo shows its own view."""
    import logging
    import warnings

    from guardrail.service.observability import logger

    level = logger.log_level
    logger.setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def run_demo(
    chart_path: str | Path = "guardrail-demo-spend.svg",
    out: TextIO | None = None,
    pace: float = 0.0,
    start: datetime | None = None,
) -> DemoResult:
    import sys

    from guardrail.tools.embedded_aws import embedded_aws

    out = out or sys.stdout
    began = time.perf_counter()
    for key, value in {"POWERTOOLS_TRACE_DISABLED": "true", "POWERTOOLS_SERVICE_NAME": "bedrock-guardrail"}.items():
        os.environ.setdefault(key, value)
    today = datetime.now(UTC).replace(hour=2, minute=40, second=0, microsecond=0)
    start = start or today
    with embedded_aws(REGION), _quiet_powertools():
        result = _Incident(out, pace, start).run(Path(chart_path))
    result.seconds = time.perf_counter() - began
    print(f"\nDone in {result.seconds:.1f} s (wall clock). Chart: {result.chart_path}", file=out)
    return result


class _Incident:
    def __init__(self, out: TextIO, pace: float, start: datetime) -> None:
        self.out = out
        self.pace = pace
        self.start = start
        self.clock = SimClock(start)
        self.result = DemoResult()
        self.seq = 0

    def say(self, text: str = "") -> None:
        print(text, file=self.out)

    def at(self, when: datetime) -> str:
        return when.astimezone(UTC).strftime("%H:%M:%S")

    def run(self, chart: Path) -> DemoResult:
        import boto3

        from guardrail.service import notify
        from guardrail.store.table import create_table

        ddb = boto3.client("dynamodb", region_name=REGION)
        create_table(ddb, TABLE)
        self.lam = boto3.client("lambda", region_name=REGION)
        role = boto3.client("iam", region_name=REGION).create_role(RoleName="demo-fn", AssumeRolePolicyDocument="{}")[
            "Role"
        ]["Arn"]
        create_function(self.lam, role, AGENT_FUNCTION, 7)
        create_function(self.lam, role, BATCH_FUNCTION, None)
        topic = boto3.client("sns", region_name=REGION).create_topic(Name="guardrail-alerts")["TopicArn"]
        secret = boto3.client("secretsmanager", region_name=REGION).create_secret(
            Name="guardrail-slack-webhook", SecretString=WEBHOOK
        )["ARN"]

        def post(url: str, body: bytes, timeout: float) -> int:
            self.result.slack_messages.append(json.loads(body))
            return 200

        real_post = notify.http_post
        notify.http_post = post
        try:
            with _demo_environment(topic, secret):
                return self._run(chart)
        finally:
            notify.http_post = real_post

    def _run(self, chart: Path) -> DemoResult:
        import handlers.reset
        import handlers.usage
        from guardrail.core.downgrade import downgrade_model_id
        from guardrail.service.observability import record_effects
        from guardrail.service.runtime import build, default_runtime

        # The handlers' runtime, built on the simulated clock (windows, burn rate, audit times).
        rt = build(now=self.clock, on_report=record_effects)
        default_runtime.install(rt)
        self.rt = rt
        usage_ctx, reset_ctx = _Context("guardrail-usage"), _Context("guardrail-reset")
        pricer = rt.engine.pricer
        result = self.result
        unguarded = Decimal(0)
        refused_quietly = 0
        self._intro()
        try:
            for tick in range(LAST_TICK + 1):
                tick_start = self.start + tick * TICK
                if tick == RESET_TICK:
                    self._oncall(handlers.reset.handler, reset_ctx)
                flag = rt.engine.flags.get("global")  # what every guarded client reads (TTL-cached)
                records: list[tuple[UsageRecord, str]] = []
                refused = 0
                switched: tuple[str, str] | None = None
                calls = scripted_calls(tick)
                for i, call in enumerate(calls):
                    at = tick_start + timedelta(seconds=(i * 30) // max(1, len(calls)))
                    self.seq += 1
                    asked = UsageRecord(
                        request_id=f"demo-{self.seq:06d}",
                        timestamp=at,
                        model_id=call.model_id,
                        input_tokens=call.input_tokens,
                        output_tokens=call.output_tokens,
                        cache_read_tokens=call.cache_read_tokens,
                        cache_write_tokens=call.cache_write_tokens,
                        metadata={"app": call.app},
                    )
                    unguarded += pricer.price(asked).cost
                    if flag.level == Level.SHUTDOWN:
                        refused += 1  # GuardrailShutdown in the client; 429 on the stopped functions
                        continue
                    model = call.model_id
                    if flag.level >= Level.THROTTLE:
                        cheaper = downgrade_model_id(model, flag.model_downgrades)
                        if cheaper is not None:
                            switched = (model, cheaper)
                            model = cheaper
                    records.append((_with_model(asked, model), call.app))
                result.refused += refused
                self.clock.at = tick_start + TICK + LOG_DELAY
                response: dict[str, Any] = {"transitions": []}
                if records:
                    event = logs_event([log_line(r, app) for r, app in records], self.clock.at)
                    with contextlib.redirect_stdout(io.StringIO()):
                        response = handlers.usage.handler(event, usage_ctx)
                spend = rt.engine.scope_totals("global").spend
                result.points.append(Point(self.clock.at, spend, unguarded))
                if response["transitions"]:
                    self._transitions(response["transitions"], spend, switched)
                elif refused and not records:
                    refused_quietly += refused
                    if tick % 8 == 0:
                        self.say(
                            f"{self.at(self.clock.at)}  spend {usd(spend):>7}  SHUTDOWN  0 calls reached Bedrock; "
                            f"{result.refused} refused so far (GuardrailShutdown; 429 on the stopped functions)"
                        )
                elif tick % 2 == 0 or tick == LOOP_START_TICK:
                    self._tick_line(tick, flag.level, spend, len(records), switched, records)
                if self.pace:
                    time.sleep(self.pace)
        finally:
            default_runtime.cache_clear()
        self._finish(chart)
        return result

    # -- pieces of the story --------------------------------------------------------------------------

    def _intro(self) -> None:
        self.say("Bedrock cost guardrail demo: a runaway agent loop on Claude Sonnet 4.5 with prompt caching")
        self.say("Embedded AWS (moto): DynamoDB ledger, SNS topic, Slack webhook secret, two target functions:")
        self.say(
            f"  {AGENT_FUNCTION} (reserved concurrency {_concurrency(self.lam, AGENT_FUNCTION)}), "
            f"{BATCH_FUNCTION} (reserved concurrency {_concurrency(self.lam, BATCH_FUNCTION)})"
        )
        self.say("Budget global, per day (UTC): alert $5, throttle $10, shutdown $25")
        self.say(
            "The real handlers run: invocation logs -> handlers.usage every 30 s; on-call -> handlers.reset. "
            f"Simulated time starts {self.start:%Y-%m-%d %H:%M} UTC."
        )
        self.say("")

    def _tick_line(
        self,
        tick: int,
        level: Level,
        spend: Decimal,
        n: int,
        switched: tuple[str, str] | None,
        records: list[tuple[UsageRecord, str]],
    ) -> None:
        agent = [r for r, app in records if app == AGENT_FUNCTION]
        what = f"{n} calls"
        if agent and tick < RESET_TICK:
            ctx = max(r.cache_read_tokens for r in agent)
            what += f" ({len(agent)} from the {AGENT_FUNCTION} loop, context {ctx // 1000}k tokens from cache)"
        if tick == LOOP_START_TICK:
            what += f"  <- {AGENT_FUNCTION} starts looping"
        models = sorted({_short(r.model_id) for r, _ in records})
        what += f" on {', '.join(models)}" if models else ""
        self.say(f"{self.at(self.clock.at)}  spend {usd(spend):>7}  {level.label.upper():<8}  {what}")

    def _transitions(self, transitions: list[str], spend: Decimal, switched: tuple[str, str] | None) -> None:
        for text in transitions:
            scope, _, levels = text.partition(": ")
            self.result.levels.append(levels)
            self.result.events.append((self.clock.at, levels.split(" -> ")[-1]))
            to_level = Level.parse(levels.split(" -> ")[-1])
            self.say("")
            self.say(
                f"{self.at(self.clock.at)}  spend {usd(spend):>7}  {to_level.label.upper():<8}  ▲ {scope}: {levels}"
            )
            report = self.rt.effects.reports[-1]
            for action in report.actions:
                self.say(f"          effect: {action}")
            for failure in report.failures + report.notification_failures:
                self.say(f"          FAILED: {failure}")
                self.result.ok = False
            self.result.sns_messages += 1
            self.say("          SNS: published to guardrail-alerts; Slack message:")
            for line in boxed(render_slack(self.result.slack_messages[-1])):
                self.say(line)
            if to_level == Level.THROTTLE:
                from guardrail.core.downgrade import downgrade_model_id

                flag = self.rt.engine.flags.get("global")
                cheaper = downgrade_model_id(SONNET, flag.model_downgrades) or SONNET
                self.result.downgraded_to = cheaper
                self.say(f"          from the next call on, guarded clients call {cheaper}")
                self.say(f"          instead of {SONNET}")
            if to_level == Level.SHUTDOWN:
                now = {name: _concurrency(self.lam, name) for name in (AGENT_FUNCTION, BATCH_FUNCTION)}
                self.result.concurrency_at_shutdown = now
                saved = self.rt.engine.flags.get("global").targets
                for name, value in now.items():
                    was = "none" if saved[name].saved is None else saved[name].saved
                    self.say(f"          {name}: reserved concurrency now {value} (saved in the flag: {was})")
                self.say("          guarded clients now raise GuardrailShutdown instead of calling Bedrock")
            self.say("")

    def _oncall(self, reset_handler: Any, ctx: _Context) -> None:
        from guardrail.tools import status

        self.clock.at = self.start + RESET_TICK * TICK
        self.say("")
        self.say(f"{self.at(self.clock.at)}  on-call (woken by the Slack message) checks the state:")
        self.say("$ guardrail status")
        for line in status.render_status(status.status_document(self.rt)).splitlines():
            self.say("  " + line)
        self.say("")
        self.say(f'$ guardrail reset --scope global --reason "{RESET_REASON}"')
        preview = status.reset_preview(self.rt, "global")
        for line in preview.lines():
            self.say("  " + line)
        self.say(f"  actor: {ONCALL}")
        self.say("Reset now? [y/N] y")
        with contextlib.redirect_stdout(io.StringIO()):
            result = reset_handler({"scope": "global", "reason": RESET_REASON, "actor": ONCALL}, ctx)
        self.result.reset = result
        if not result.get("ok"):
            self.result.ok = False
        for line in status.render_reset(result).splitlines():
            self.say("  " + line)
        self.result.levels.append(f"{result.get('from_level')} -> {result.get('to_level')}")
        self.result.events.append((self.clock.at, "reset"))
        after = {name: _concurrency(self.lam, name) for name in (AGENT_FUNCTION, BATCH_FUNCTION)}
        self.result.concurrency_after_reset = after
        self.say(
            f"  restored state: {AGENT_FUNCTION} reserved concurrency {after[AGENT_FUNCTION]}, "
            f"{BATCH_FUNCTION} {after[BATCH_FUNCTION]} (no reservation, as before)"
        )
        self.say("  Slack message:")
        for line in boxed(render_slack(self.result.slack_messages[-1]), indent="  "):
            self.say(line)
        self.say("")

    def _finish(self, chart: Path) -> None:
        from guardrail.tools import status

        result = self.result
        self.say("")
        self.say("$ guardrail history --limit 8")
        for line in status.render_history(status.history(self.rt, status.HistoryFilter(limit=8))).splitlines():
            self.say("  " + line)
        last = result.points[-1]
        self.say("")
        self.say(
            f"Spend today with the guardrail: {usd(last.spend)}; the same calls without it: {usd(last.unguarded)} "
            f"(saved {usd(last.unguarded - last.spend)} in {len(result.points) * 30 // 60} minutes)."
        )
        chart.parent.mkdir(parents=True, exist_ok=True)
        chart.write_text(spend_chart_svg(result.points, result.events, self.rt.engine.resolver.budget_for("global")))
        result.chart_path = str(chart)


def _with_model(record: UsageRecord, model_id: str) -> UsageRecord:
    from dataclasses import replace

    return replace(record, model_id=model_id)


def _short(model_id: str) -> str:
    name = model_id.split(".", 2)[-1] if model_id.count(".") >= 2 else model_id
    return name.split("-2025")[0].split("-2024")[0]


# -- the chart ---------------------------------------------------------------------------------------

EVENT_COLOURS = {"alert": "#d97706", "throttle": "#7c3aed", "shutdown": "#dc2626", "reset": "#059669"}


def spend_chart_svg(points: list[Point], events: list[tuple[datetime, str]], budget: Any) -> str:
    """Spend over time (with and without the guardrail), thresholds and escalations, as a standalone SVG."""
    width, height = 960, 480
    left, right, top, bottom = 70, 30, 50, 60
    plot_w, plot_h = width - left - right, height - top - bottom
    t0, t1 = points[0].at, points[-1].at
    span = max(1.0, (t1 - t0).total_seconds())
    thresholds: dict[str, Decimal] = {}
    if budget is not None:
        thresholds = {lvl: budget.thresholds.for_level(Level.parse(lvl)) for lvl in ("alert", "throttle", "shutdown")}
    top_value = max([*(float(p.unguarded) for p in points), *(float(v) for v in thresholds.values()), 1.0])
    y_max = (int(top_value / 10) + 1) * 10

    def x(at: datetime) -> float:
        return left + plot_w * (at - t0).total_seconds() / span

    def y(value: Decimal | float) -> float:
        return top + plot_h * (1 - float(value) / y_max)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="Helvetica, Arial, sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
        f'<text x="{left}" y="28" font-size="16" font-weight="bold">Bedrock spend today (global budget): '
        "a runaway agent loop, with and without the guardrail</text>",
    ]
    step = 10 if y_max > 40 else 5
    for dollars in range(0, y_max + 1, step):
        parts.append(
            f'<line x1="{left}" y1="{y(dollars):.1f}" x2="{left + plot_w}" y2="{y(dollars):.1f}" stroke="#eeeeee"/>'
        )
        parts.append(f'<text x="{left - 8}" y="{y(dollars) + 4:.1f}" text-anchor="end">${dollars}</text>')
    minute = t0.replace(second=0, microsecond=0)
    while minute <= t1:
        if minute >= t0 and minute.minute % 5 == 0:
            parts.append(
                f'<line x1="{x(minute):.1f}" y1="{top + plot_h}" x2="{x(minute):.1f}" '
                f'y2="{top + plot_h + 5}" stroke="#333333"/>'
            )
            parts.append(
                f'<text x="{x(minute):.1f}" y="{top + plot_h + 20}" text-anchor="middle">{minute:%H:%M}</text>'
            )
        minute += timedelta(minutes=1)
    parts.append(f'<text x="{left + plot_w / 2}" y="{height - 15}" text-anchor="middle">time (UTC, simulated)</text>')
    for name, value in thresholds.items():
        colour = EVENT_COLOURS[name]
        parts.append(
            f'<line x1="{left}" y1="{y(value):.1f}" x2="{left + plot_w}" y2="{y(value):.1f}" '
            f'stroke="{colour}" stroke-dasharray="6 4"/>'
        )
        parts.append(
            f'<text x="{left + plot_w - 4}" y="{y(value) - 5:.1f}" text-anchor="end" fill="{colour}">'
            f"{name} ${value}</text>"
        )
    for i, (at, name) in enumerate(events):
        colour = EVENT_COLOURS.get(name, "#555555")
        parts.append(
            f'<line x1="{x(at):.1f}" y1="{top}" x2="{x(at):.1f}" y2="{top + plot_h}" stroke="{colour}" '
            'stroke-width="1.5" opacity="0.7"/>'
        )
        parts.append(
            f'<text x="{x(at) + 4:.1f}" y="{top + 16 + 16 * i}" fill="{colour}" font-weight="bold">'
            f"{name} {at:%H:%M}</text>"
        )

    def path(values: list[tuple[datetime, Decimal]]) -> str:
        return " ".join(f"{'M' if i == 0 else 'L'}{x(at):.1f},{y(v):.1f}" for i, (at, v) in enumerate(values))

    parts.append(
        f'<path d="{path([(p.at, p.unguarded) for p in points])}" fill="none" stroke="#9ca3af" '
        'stroke-width="2" stroke-dasharray="4 3"/>'
    )
    parts.append(f'<path d="{path([(p.at, p.spend) for p in points])}" fill="none" stroke="#2563eb" stroke-width="3"/>')
    last = points[-1]
    parts.append(
        f'<text x="{x(last.at) - 4:.1f}" y="{y(last.unguarded) - 8:.1f}" text-anchor="end" fill="#6b7280">'
        f"without the guardrail {usd(last.unguarded)}</text>"
    )
    parts.append(
        f'<text x="{x(last.at) - 4:.1f}" y="{y(last.spend) + 18:.1f}" text-anchor="end" fill="#2563eb">'
        f"with the guardrail {usd(last.spend)}</text>"
    )
    parts.append(f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#333333"/>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
