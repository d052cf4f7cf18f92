"""`guardrail replay`: would these thresholds have caught the incident? Known file, known answers, no AWS.

tests/events/incident-runaway-agent.jsonl (2026-11-15, UTC): four Claude 3 Haiku calls ($0.00075 each) from
02:00, then a support-agent loop on Sonnet 4.5 (us.) every 3 s from 02:40:00, 400 calls. Each loop call is
100 input + 199,900 cache-read + 6,002 output tokens = $0.16533 on Sonnet, $0.05511 on Haiku 4.5 (200,000
input tokens in all: one more would be billed at the long-context rate). Plus one
request delivered twice and two malformed lines.

By hand: alert at loop call 31 ($5.12823) 02:41:30; throttle at call 61 ($10.08813) 02:43:00. Then:
- lag 0: calls 62.. go to Haiku; shutdown at call 332 ($25.02294) 02:56:33; calls 333..400 refused.
- lag 30 s: calls 62..70 still Sonnet; shutdown at call 314 ($25.02294) 02:55:39; calls 324..400 refused.
"""

from __future__ import annotations

import gzip
import io
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from guardrail.core.config import load_settings
from guardrail.core.models import Level
from guardrail.tools.cli import main
from guardrail.tools.replay import replay
from tests.support.common import EVENTS

INCIDENT = EVENTS / "incident-runaway-agent.jsonl"


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    return main(list(argv), out=out, err=err), out.getvalue(), err.getvalue()


def triggers(report: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(t["at"], f"{t['from_level']} -> {t['to_level']}", t["spend_usd"]) for t in report["triggers"]]


def test_known_incident_trigger_times_and_savings_without_lag() -> None:
    code, out, err = run("replay", str(INCIDENT), "--lag", "0", "--json")
    assert code == 0 and err == ""
    report = json.loads(out)
    assert triggers(report) == [
        ("2026-11-15T02:41:30+00:00", "normal -> alert", "5.12823"),
        ("2026-11-15T02:43:00+00:00", "alert -> throttle", "10.08813"),
        ("2026-11-15T02:56:33+00:00", "throttle -> shutdown", "25.02294"),
    ]
    assert (report["records"], report["duplicates"], report["quarantined"]) == (404, 1, 2)
    assert Decimal(report["actual_usd"]) == Decimal("66.135")
    assert Decimal(report["with_guardrail_usd"]) == Decimal("25.02294")
    assert Decimal(report["saved_by_throttle_usd"]) == 271 * (Decimal("0.16533") - Decimal("0.05511"))
    assert Decimal(report["saved_by_shutdown_usd"]) == 68 * Decimal("0.16533")
    assert (report["downgraded_calls"], report["refused_calls"]) == (271, 68)


def test_default_lag_of_30_seconds_delays_the_effects() -> None:
    code, out, _ = run("replay", str(INCIDENT))
    assert code == 0
    rows = [line.split()[:5] for line in out.splitlines() if line.startswith("2026-11-15")]
    assert rows == [
        ["2026-11-15", "02:41:30", "global", "normal", "->"],
        ["2026-11-15", "02:43:00", "global", "alert", "->"],
        ["2026-11-15", "02:55:39", "global", "throttle", "->"],
    ]
    assert "Spend as it happened:      $66.14" in out
    assert "Spend with the guardrail:  $25.52" in out
    assert "(77 calls refused)" in out and "Effects assumed 30 s" in out


def test_gzip_export_and_cloudwatch_event_lines_give_the_same_answer(tmp_path: Path) -> None:
    lines = INCIDENT.read_text().splitlines()
    export = tmp_path / "000000.gz"  # CloudWatch Logs export to S3: "<timestamp> <message>"
    with gzip.open(export, "wt") as f:
        for line in lines:
            f.write(f"2026-11-15T03:00:00.000Z {line}\n")
    events = tmp_path / "events.jsonl"  # `aws logs filter-log-events` events, one per line
    events.write_text("\n".join(json.dumps({"timestamp": 1, "message": line, "ingestionTime": 2}) for line in lines))
    settings = load_settings()
    expected = replay(INCIDENT, settings, lag_seconds=0)
    for path in (export, events):
        report = replay(path, settings, lag_seconds=0)
        assert [t.to_dict() for t in report.triggers] == [t.to_dict() for t in expected.triggers]
        assert report.records == 404


def test_replay_never_touches_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    import boto3

    def no_aws(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("replay must not create an AWS client")

    monkeypatch.setattr(boto3, "client", no_aws)
    monkeypatch.setattr("guardrail.store.aws_clients.client", no_aws)
    report = replay(INCIDENT, load_settings(), lag_seconds=0)
    assert report.first(Level.SHUTDOWN) is not None


def test_other_thresholds_answer_the_what_if() -> None:
    code, out, _ = run("replay", str(INCIDENT), "--thresholds", "alert=50,throttle=100,shutdown=200")
    assert code == 0
    assert "normal -> alert" in out and "No level" not in out
    code, out, _ = run("replay", str(INCIDENT), "--thresholds", "alert=100,throttle=200,shutdown=300")
    assert code == 0 and "No level would have triggered." in out and "Saved:                     $0.00" in out


def test_per_app_budget_from_a_budgets_override() -> None:
    budgets = json.dumps([{"scope": "app:*", "window": "hour", "thresholds": "alert=1,throttle=2,shutdown=3"}])
    code, out, _ = run("replay", str(INCIDENT), "--budgets", budgets, "--json")
    report = json.loads(out)
    assert code == 0
    assert {t["scope"] for t in report["triggers"]} == {"app:support-agent"}
    assert [t["to_level"] for t in report["triggers"]] == ["alert", "throttle", "shutdown"]


def test_missing_file_and_bad_setting_are_one_line(tmp_path: Path) -> None:
    code, out, err = run("replay", str(tmp_path / "nope.jsonl"))
    assert code == 2 and out == "" and "no such file" in err and err.count("\n") == 1
    code, _, err = run("replay", str(INCIDENT), "--thresholds", "alert=10,throttle=5,shutdown=25")
    assert code == 2 and "--thresholds: " in err and "GUARDRAIL_THRESHOLDS" not in err and err.count("\n") == 1
