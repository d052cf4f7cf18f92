"""`guardrail prices`: what a model id is charged per token and where that rate comes from, and which models
of an invocation-log export would fall to the ceiling rate. Reads no table; AWS only to resolve an
application inference profile ARN.

    guardrail prices MODEL_ID           effective rates and their source (genai-prices, supplemental, override,
                                        ceiling, or not token-priced)
    guardrail prices check FILE         models of an export priced at the ceiling, with request counts
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TextIO

from guardrail.core.errors import CliError

if TYPE_CHECKING:
    from guardrail.core.config import Settings
    from guardrail.core.pricing import Pricer, Rates, TokenPrices

OK, ATTENTION = 0, 1
SOURCES = {
    "genai-prices": "genai-prices",
    "supplemental": "supplemental table",
    "override": "override (GUARDRAIL_PRICE_OVERRIDES)",
    "ceiling": "ceiling (GUARDRAIL_CEILING_RATE): unknown model, add a price override",
    "not-token-priced": "not token-priced",
}
BILLED_BY = {
    "image": "per image",
    "video": "per second of video",
    "provisioned": "by the hour (provisioned throughput)",
    "reserved": "for reserved capacity",
}


def add_parser(sub: Any) -> None:
    p = sub.add_parser("prices", help="effective per-token rates of a model id and their source; check an export")
    p.add_argument(
        "what", nargs="+", metavar="MODEL_ID | check FILE", help="a model id or ARN, or `check` and an export file"
    )
    p.add_argument("--json", action="store_true", help="print JSON (rates as decimal strings)")


def cmd_prices(args: argparse.Namespace, out: TextIO) -> int:
    from guardrail.core.config import load_settings

    settings = load_settings()
    what: list[str] = args.what
    if what[0] == "check":
        if len(what) != 2:
            raise CliError("prices check: give one invocation-log export file (- for standard input)")
        report = check(what[1], settings)
        print(json.dumps(report.to_dict(), indent=2) if args.json else render_check(report), file=out)
        return ATTENTION if report.at_ceiling else OK
    if len(what) != 1:
        raise CliError("prices: give one model id, or `check FILE`")
    info = describe(what[0], pricer_for(settings))
    print(json.dumps(info, indent=2) if args.json else render_rates(info), file=out)
    return ATTENTION if info["origin"] == "ceiling" else OK


def pricer_for(settings: Settings) -> Pricer:
    from guardrail.core.pricing import Pricer

    def bedrock() -> Any:
        from guardrail.store.aws_clients import client

        return client("bedrock")

    return Pricer(overrides=settings.price_overrides, ceiling=settings.ceiling_rate, bedrock_factory=bedrock)


# -- one model -----------------------------------------------------------------------------------------


def _num(value: Decimal) -> str:
    return f"{value.normalize():f}"  # 8.250 -> 8.25, 15 -> 15 (never 1.5E+1)


def _prices(p: TokenPrices) -> dict[str, str]:
    return {
        "input": _num(p.input),
        "output": _num(p.output),
        "cache_read": _num(p.cache_read),
        "cache_write_5m": _num(p.cache_write),
        "cache_write_1h": _num(p.cache_write_1h),
    }


def describe(model_id: str, pricer: Pricer) -> dict[str, Any]:
    from guardrail.core import price_table

    rates: Rates = pricer.rates_for(model_id)
    info: dict[str, Any] = {
        "model_id": model_id,
        "origin": rates.origin,
        "priced_as": rates.source,
        "billing": rates.billing,
        "usd_per_million_tokens": _prices(rates.base),
        "tiers": [{"above_input_tokens": start, "usd_per_million_tokens": _prices(p)} for start, p in rates.tiers],
        "reference": rates.reference,
    }
    if rates.billing == "token" and rates.origin != "ceiling":
        info["service_tiers"] = {
            name: {"multiplier": _num(m), "reference": ref} for name, (m, ref) in price_table.TIER_MULTIPLIERS.items()
        }
        row = price_table.find(price_table.LATENCY_OPTIMIZED, rates.source)
        if row is not None:
            info["latency_optimized"] = {"input": row.input, "output": row.output, "reference": row.source}
    return info


def _line(p: dict[str, str]) -> str:
    return (
        f"input {p['input']}, output {p['output']}, cache read {p['cache_read']}, "
        f"cache write {p['cache_write_5m']} (5 min) / {p['cache_write_1h']} (1 h)"
    )


def render_rates(info: dict[str, Any]) -> str:
    origin = info["origin"]
    source = SOURCES[origin]
    if origin == "genai-prices":
        source += f" ({info['priced_as']})"
    elif info["reference"] and origin in ("supplemental", "not-token-priced"):
        source += f" ({info['reference']})"
    lines = [info["model_id"], f"  source: {source}"]
    if info["billing"] != "token":
        billed = BILLED_BY[info["billing"]]
        lines.append(f"  billed {billed}: requests are counted, their cost is not per token ($0 in the ledger)")
        return "\n".join(lines)
    lines.append(f"  USD per 1M tokens: {_line(info['usd_per_million_tokens'])}")
    for tier in info["tiers"]:
        ref = f" ({info['reference']})" if info["reference"] else ""
        lines.append(
            f"  above {tier['above_input_tokens']:,} input tokens, cache included: "
            f"{_line(tier['usd_per_million_tokens'])}{ref}"
        )
    if "latency_optimized" in info:
        lo = info["latency_optimized"]
        lines.append(f"  latency-optimized: input {lo['input']}, output {lo['output']} ({lo['reference']})")
    if "service_tiers" in info:
        tiers = ", ".join(f"{name} x{t['multiplier']}" for name, t in info["service_tiers"].items())
        lines.append(f"  service tiers, where the record names them: {tiers}")
    return "\n".join(lines)


# -- an export ----------------------------------------------------------------------------------------


@dataclass
class CheckReport:
    file: str
    records: int = 0
    quarantined: int = 0
    failed: int = 0
    requests: Counter[str] = field(default_factory=Counter)
    at_ceiling: dict[str, int] = field(default_factory=dict)
    not_token_priced: dict[str, int] = field(default_factory=dict)
    ceiling_usd: Decimal = Decimal(0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "records": self.records,
            "quarantined": self.quarantined,
            "failed_requests": self.failed,
            "models": len(self.requests),
            "at_ceiling": self.at_ceiling,
            "ceiling_usd": str(self.ceiling_usd),
            "not_token_priced": self.not_token_priced,
        }


def check(path: str, settings: Settings) -> CheckReport:
    """Price every record of an export as the guardrail would (no AWS: application profile ARNs count as
    unresolved unless overridden) and list the models that fall to the ceiling."""
    from pathlib import Path

    from guardrail.core.pricing import Pricer
    from guardrail.service.sources import ParseResult, RecordParser
    from guardrail.tools.replay_input import open_lines, record_text

    if path != "-" and not Path(path).is_file():
        raise CliError(f"prices check: no such file: {path}")
    pricer = Pricer(overrides=settings.price_overrides, ceiling=settings.ceiling_rate)
    parser = RecordParser(settings.max_tokens_per_request)
    report = CheckReport(file=path)
    for _, line in open_lines(path):
        parsed = ParseResult()
        parser.invocation_log_line(record_text(line), parsed, source="prices-check")
        report.quarantined += len(parsed.quarantined)
        report.failed += len(parsed.failed)
        for record in parsed.records:
            report.records += 1
            report.requests[record.model_id] += 1
            price = pricer.price(record)
            if price.at_ceiling:
                report.at_ceiling[record.model_id] = report.at_ceiling.get(record.model_id, 0) + 1
                report.ceiling_usd += price.cost
            elif price.billing != "token":
                report.not_token_priced[record.model_id] = report.not_token_priced.get(record.model_id, 0) + 1
    report.at_ceiling = dict(sorted(report.at_ceiling.items(), key=lambda kv: (-kv[1], kv[0])))
    return report


def render_check(report: CheckReport) -> str:
    lines = [
        f"{report.records:,} records of {len(report.requests)} models in {report.file} "
        f"({report.failed:,} failed requests at $0, {report.quarantined:,} lines quarantined)"
    ]
    if report.at_ceiling:
        lines.append("Priced at the ceiling rate (add GUARDRAIL_PRICE_OVERRIDES for these):")
        width = max(len(m) for m in report.at_ceiling)
        lines += [f"  {model:<{width}}  {n:>8,} requests{_why(model)}" for model, n in report.at_ceiling.items()]
        lines.append(f"  together ${report.ceiling_usd.quantize(Decimal('0.01'))} at the ceiling rate")
    else:
        lines.append("No model falls to the ceiling rate.")
    if report.not_token_priced:
        lines.append("Not billed per token (counted, cost not per token):")
        lines += [f"  {model}  {n:,} requests" for model, n in sorted(report.not_token_priced.items())]
    return "\n".join(lines)


def _why(model_id: str) -> str:
    if ":application-inference-profile/" in model_id:
        return "  (application profile: the usage function resolves it through Bedrock; this check does not)"
    return ""
