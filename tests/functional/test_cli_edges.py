"""The on-call CLI's sharp edges (issue 17, items 4 and 6-9), each asserted as the person sees it."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from guardrail.tools.cli import BROKEN_PIPE, main
from tests.functional import test_cli
from tests.functional.test_cli import Account, run
from tests.support.common import EVENTS

REPO = Path(__file__).resolve().parents[2]
account, shut_down = test_cli.account, test_cli.shut_down  # the deployed guardrail of test_cli, as fixtures


class ClosedPipe(io.StringIO):
    """Standard output whose reader went away (`guardrail status | head -1` after head exits)."""

    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")


# -- 4: output piped into head -----------------------------------------------------------------------


def test_a_reader_that_goes_away_ends_the_command_quietly(shut_down: Account) -> None:
    for argv in (["status"], ["history"], ["replay", str(EVENTS / "incident-runaway-agent.jsonl")]):
        err = io.StringIO()
        assert main(argv, out=ClosedPipe(), err=err) == BROKEN_PIPE
        assert err.getvalue() == ""


def test_replay_piped_into_a_closed_reader_prints_no_traceback() -> None:
    command = [sys.executable, "-m", "guardrail.tools.cli", "replay", str(EVENTS / "incident-runaway-agent.jsonl")]
    proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # like `| head -0`: nobody reads
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == BROKEN_PIPE
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr


# -- 6: history filters match what a person types ----------------------------------------------------


def test_history_finds_a_reset_by_the_words_on_call_types(shut_down: Account) -> None:
    code, _, err = run("reset", "--reason", "loop fixed", "--yes")
    assert code == 0, err
    for action in ("reset", "->normal", "-> normal", "shutdown -> normal", "RESET"):
        code, out, err = run("history", "--action", action, "--json")
        assert code == 0 and err == "", (action, err)
        entries = json.loads(out)
        assert [(e["level_before"], e["level_after"], e["reason"]) for e in entries] == [
            ("shutdown", "normal", "loop fixed")
        ], action
    code, out, _ = run("history", "--action", "reset")
    assert "shutdown->normal" in out and "loop fixed" in out


# -- 7: status after a reset shows the re-armed thresholds ---------------------------------------------


def test_status_after_a_reset_shows_when_each_level_comes_next(shut_down: Account) -> None:
    assert run("reset", "--reason", "loop fixed", "--yes")[0] == 0
    code, out, _ = run("status")
    assert code == 0 and "global: NORMAL" in out
    (line,) = [line for line in out.splitlines() if line.strip().startswith("thresholds")]
    assert "reached" not in line
    assert "alert $34.70 ($5.00 to go)" in line and "shutdown $54.70 ($25.00 to go)" in line
    assert "re-armed" in line
    scope = json.loads(run("status", "--json")[1])["scopes"][0]
    assert scope["thresholds"] == {"alert": "5", "throttle": "10", "shutdown": "25"}  # the contract stays
    rearmed = {level: Decimal(value) for level, value in scope["rearmed_thresholds"].items()}  # decimal strings
    assert rearmed == {"alert": Decimal("34.7"), "throttle": Decimal("39.7"), "shutdown": Decimal("54.7")}


# -- 8: reset checks its arguments before the preview and before AWS ------------------------------------


def test_reset_refuses_a_too_long_reason_before_printing_the_preview(shut_down: Account) -> None:
    code, out, err = run("reset", "--reason", "x" * 3000)
    assert code == 2 and out == ""
    assert err.startswith("guardrail: reset refused: --reason: ") and "2000 characters" in err
    assert len(err) < 300 and err.count("\n") == 1


def test_reset_without_reason_is_reported_before_a_missing_region(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setattr("boto3.DEFAULT_SESSION", None)
    code, out, err = run("reset", "--scope", "global", "--yes")
    assert code == 2 and out == "" and "--reason" in err and "Region" not in err


# -- 9: errors name what was missing ---------------------------------------------------------------------


def test_missing_table_names_the_table_and_the_region(aws: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GUARDRAIL_TABLE_NAME", "not-deployed")
    code, _, err = run("status")
    assert code == 2 and err.count("\n") == 1
    assert "no table 'not-deployed' in Region us-east-1" in err and "guardrail table create" in err


def test_a_bad_setting_is_one_clean_line(account: Account, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GUARDRAIL_WINDOW", "week")
    code, _, err = run("status")
    assert code == 2 and err.startswith("guardrail: invalid configuration: GUARDRAIL_WINDOW: ")
    assert ":;" not in err and err.count("\n") == 1


def test_a_bad_flag_is_reported_as_the_flag() -> None:
    code, _, err = run("replay", str(EVENTS / "incident-runaway-agent.jsonl"), "--thresholds", "1,2,3")
    assert code == 2 and "--thresholds: " in err and "GUARDRAIL_THRESHOLDS" not in err


def test_an_unknown_guardrail_variable_is_warned_about(account: Account, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GUARDRAIL_THRESHOLD", "alert=1,throttle=2,shutdown=3")
    code, out, err = run("status")
    assert code == 0 and "global: NORMAL" in out
    assert err == (
        "guardrail: warning: GUARDRAIL_THRESHOLD is not a setting and is ignored; did you mean GUARDRAIL_THRESHOLDS?\n"
    )
