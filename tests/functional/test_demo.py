"""`guardrail demo`: the scripted incident end to end on the embedded AWS, in seconds."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import pytest

from guardrail.tools.cli import main


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    chart = tmp_path_factory.mktemp("demo") / "spend.svg"
    out, err = io.StringIO(), io.StringIO()
    code = main(["demo", "--chart", str(chart), "--pace", "0"], out=out, err=err)
    return {"code": code, "out": out.getvalue(), "err": err.getvalue(), "chart": chart}


def test_demo_shows_every_escalation_and_the_reset(demo: dict[str, Any]) -> None:
    out = demo["out"]
    assert demo["code"] == 0, demo["err"]
    positions = [
        out.index(marker)
        for marker in (
            "global: normal -> alert",
            "global: alert -> throttle",
            "global: throttle -> shutdown",
            "$ guardrail reset --scope global",
            "scope global: shutdown -> normal",
        )
    ]
    assert positions == sorted(positions)
    # The Slack message as it would look, for the alert.
    assert "BEDROCK GUARDRAIL: GLOBAL MOVED TO ALERT" in out and "Burn rate:" in out
    # Throttle: calls switch to Haiku.
    assert "guarded clients call us.anthropic.claude-haiku-4-5-20251001-v1:0" in out
    assert "on claude-haiku-4-5" in out
    # Shutdown: targets at 0, with what was saved; reset puts back exactly that.
    assert "support-agent: reserved concurrency now 0 (saved in the flag: 7)" in out
    assert "summarizer: reserved concurrency now 0 (saved in the flag: none)" in out
    assert "restored state: support-agent reserved concurrency 7, summarizer none" in out
    assert "FAILED" not in out


def test_demo_writes_the_chart_and_names_it(demo: dict[str, Any]) -> None:
    chart: Path = demo["chart"]
    svg = chart.read_text()
    assert svg.startswith("<svg") and svg.rstrip().endswith("</svg>")
    for label in ("alert $5", "throttle $10", "shutdown $25", "reset 03:04", "without the guardrail"):
        assert label in svg
    assert f"Chart: {chart}" in demo["out"]


def test_demo_is_fast_and_leaves_no_settings_behind(demo: dict[str, Any]) -> None:
    seconds = float(demo["out"].rsplit("Done in ", 1)[1].split(" s")[0])
    assert seconds < 30
    assert not [k for k in os.environ if k.startswith("GUARDRAIL_")]
    assert os.environ["AWS_ACCESS_KEY_ID"] == "testing"  # the embedded AWS's fake credentials are gone
