"""`guardrail prices`: effective rates and their source for a model id; `prices check` on an export."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from guardrail.tools.cli import main
from tests.support.common import EVENTS
from tests.support.factories import log_line, record


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    return main(list(argv), out=out, err=err), out.getvalue(), err.getvalue()


@pytest.mark.parametrize(
    ("model", "source", "rates"),
    [
        (
            "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
            "source: genai-prices (regional.anthropic.claude-sonnet-4-5-20250929-v1:0)",
            "input 3.3, output 16.5, cache read 0.33, cache write 4.125 (5 min) / 6.6 (1 h)",
        ),
        ("amazon.titan-embed-text-v2:0", "source: genai-prices", "input 0.02, output 0,"),
        (
            "cohere.command-r-plus-v1:0",
            "source: supplemental table (https://aws.amazon.com/bedrock/pricing/)",
            "input 3, output 15,",
        ),
    ],
)
def test_rates_and_source_of_a_model(model: str, source: str, rates: str) -> None:
    code, out, err = run("prices", model)
    assert (code, err) == (0, "")
    assert out.splitlines()[0] == model and source in out and rates in out


def test_long_context_tier_is_shown() -> None:
    _, out, _ = run("prices", "global.anthropic.claude-sonnet-4-5-20250929-v1:0")
    assert "above 200,000 input tokens, cache included: input 6, output 22.5, cache read 0.6," in out


def test_override_and_ceiling_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GUARDRAIL_PRICE_OVERRIDES", '{"acme.negotiated-v1": {"input": 1, "output": 2}}')
    code, out, _ = run("prices", "acme.negotiated-v1")
    assert code == 0 and "source: override (GUARDRAIL_PRICE_OVERRIDES)" in out and "input 1, output 2," in out
    code, out, _ = run("prices", "acme.mystery-v9:0")
    assert code == 1 and "source: ceiling (GUARDRAIL_CEILING_RATE)" in out and "input 15, output 75," in out


def test_not_token_priced_models_say_so() -> None:
    code, out, _ = run("prices", "arn:aws:bedrock:us-east-1:123456789012:provisioned-model/p1")
    assert code == 0 and "billed by the hour (provisioned throughput)" in out and "not per token" in out
    _, out, _ = run("prices", "amazon.nova-canvas-v1:0")
    assert "billed per image" in out


def test_json_output() -> None:
    code, out, _ = run("prices", "cohere.embed-english-v3", "--json")
    info = json.loads(out)
    assert code == 0 and info["origin"] == "supplemental"
    assert info["usd_per_million_tokens"]["input"] == "0.1" and info["usd_per_million_tokens"]["output"] == "0"


def test_check_lists_models_that_fall_to_the_ceiling_with_request_counts(tmp_path: Path) -> None:
    lines = [log_line(record(f"a{i}", model="acme.mystery-v9:0")) for i in range(3)]
    lines += [log_line(record("b1", model="zeta.unknown-v1:0"))]
    lines += [log_line(record(f"c{i}", model="amazon.titan-embed-text-v2:0")) for i in range(5)]
    lines += [log_line(record("d1", model="amazon.nova-reel-v1:1"))]
    lines += [json.dumps({**json.loads(log_line(record("e1"))), "errorCode": "ThrottlingException", "output": None})]
    export = tmp_path / "export.jsonl"
    export.write_text("\n".join(lines) + "\n")
    code, out, err = run("prices", "check", str(export))
    assert (code, err) == (1, "")
    assert "10 records of 4 models" in out and "1 failed requests at $0" in out
    rows = [line.split() for line in out.splitlines() if line.startswith("  ") and "requests" in line]
    assert rows[:2] == [["acme.mystery-v9:0", "3", "requests"], ["zeta.unknown-v1:0", "1", "requests"]]
    assert "amazon.nova-reel-v1:1  1 requests" in out
    code, out, _ = run("prices", "check", str(export), "--json")
    assert json.loads(out)["at_ceiling"] == {"acme.mystery-v9:0": 3, "zeta.unknown-v1:0": 1}


def test_check_of_a_clean_export_exits_zero() -> None:
    code, out, _ = run("prices", "check", str(EVENTS / "incident-runaway-agent.jsonl"))
    assert code == 0 and "No model falls to the ceiling rate." in out


def test_bad_arguments_are_one_line(tmp_path: Path) -> None:
    code, out, err = run("prices", "check", str(tmp_path / "nope.jsonl"))
    assert code == 2 and out == "" and "no such file" in err and err.count("\n") == 1
    code, _, err = run("prices", "a", "b")
    assert code == 2 and "give one model id" in err
