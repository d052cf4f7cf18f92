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

import contextlib
import html
import io
import json
import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, TextIO

from guardrail.core.models import Level, UsageRecord, usd
from guardrail.tools.demo_chart import spend_chart_svg
from guardrail.tools.demo_scenario import (
    AGENT_FUNCTION,
    BATCH_FUNCTION,
    LAST_TICK,
    LOG_DELAY,
    LOOP_START_TICK,
    ONCALL,
    REGION,
    RESET_REASON,
    RESET_TICK,
    SONNET,
    TABLE,
    TICK,
    WEBHOOK,
    LambdaContext,
    SimClock,
    concurrency,
    demo_environment,
    log_line,
    logs_event,
    quiet_powertools,
    scripted_calls,
)
from guardrail.tools.embedded_aws import create_function

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
    with embedded_aws(REGION), quiet_powertools():
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
            with demo_environment(topic, secret):
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
        usage_ctx, reset_ctx = LambdaContext("guardrail-usage"), LambdaContext("guardrail-reset")
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
                never_fixed = scripted_calls(tick, fixed_at=None)
                unguarded += sum((pricer.price(c.record("-", tick_start)).cost for c in never_fixed), Decimal(0))
                for i, call in enumerate(calls):
                    at = tick_start + timedelta(seconds=(i * 30) // max(1, len(calls)))
                    self.seq += 1
                    asked = call.record(f"demo-{self.seq:06d}", at)
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
            f"  {AGENT_FUNCTION} (reserved concurrency {concurrency(self.lam, AGENT_FUNCTION)}), "
            f"{BATCH_FUNCTION} (reserved concurrency {concurrency(self.lam, BATCH_FUNCTION)})"
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
                now = {name: concurrency(self.lam, name) for name in (AGENT_FUNCTION, BATCH_FUNCTION)}
                self.result.concurrency_at_shutdown = now
                saved = self.rt.engine.flags.get("global").targets
                for name, value in now.items():
                    was = "none" if saved[name].saved is None else saved[name].saved
                    self.say(f"          {name}: reserved concurrency now {value} (saved in the flag: {was})")
                self.say("          guarded clients now raise GuardrailShutdown instead of calling Bedrock")
            self.say("")

    def _oncall(self, reset_handler: Any, ctx: LambdaContext) -> None:
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
        after = {name: concurrency(self.lam, name) for name in (AGENT_FUNCTION, BATCH_FUNCTION)}
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
            f"Spend today with the guardrail: {usd(last.spend)}; without it: {usd(last.unguarded)}, as nobody is "
            f"alerted and the loop runs on (saved {usd(last.unguarded - last.spend)} in "
            f"{len(result.points) * 30 // 60} minutes)."
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
