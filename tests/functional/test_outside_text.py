"""Text from outside (app names, reasons, model ids) is data wherever it reaches a person: quoted in
printed commands, escaped in terminals, inert in Slack (issue 13, items 7 to 9)."""

from __future__ import annotations

import io
import json
import shlex
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from guardrail.tools.cli import main
from tests.support.factories import log_line, logs_event, record
from tests.support.world import World

INJECT_FLAGS = "x --scope global --snooze-for 9999d"
INJECT_SUBSHELL = "x$(touch PWNED)`touch PWNED2`"
INJECT_ROWS = "evil\nglobal: NORMAL\x1b[2J\x1b[32m ok"


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def spend_as(world: World, app: str, n: int = 60, prefix: str = "r") -> None:
    """n requests of $0.495 from one app (60 = $29.70: past every default threshold)."""
    now = datetime.now(UTC)
    lines = [
        log_line(record(f"{prefix}-{i}", input_tokens=100_000, output_tokens=10_000, at=now, app=app)) for i in range(n)
    ]
    world.usage(logs_event(lines))


@pytest.fixture
def apps(world: World, monkeypatch: pytest.MonkeyPatch) -> World:
    monkeypatch.setenv("GUARDRAIL_BUDGETS", json.dumps([{"scope": "global"}, {"scope": "app:*"}]))
    from guardrail.service.runtime import default_runtime

    default_runtime.cache_clear()
    return world


def reset_lines(world: World) -> list[str]:
    return [line for m in world.sns_messages() for line in m.splitlines() if line.startswith("Reset: ")]


# -- item 7: printed commands ---------------------------------------------------------------------------


@pytest.mark.parametrize("app", [INJECT_FLAGS, INJECT_SUBSHELL])
def test_pasted_reset_command_runs_exactly_the_scope_it_names(
    apps: World, app: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spend_as(apps, app)
    commands = {line.removeprefix("Reset: ") for line in reset_lines(apps)}
    assert commands, "the alerts carry the reset command"
    bash = shutil.which("bash")
    assert bash is not None
    for command in commands:
        # On-call pastes the line into bash: `guardrail` here only prints the words it received.
        script = "guardrail() { printf '%s\\n' \"$@\"; }\n" + command
        done = subprocess.run([bash, "-c", script], cwd=tmp_path, capture_output=True, text=True, check=True)
        words = done.stdout.splitlines()
        assert words[0] == "reset" and words[1] == "--scope" and words[3:] == ["--reason", "<what was fixed>"]
        assert words[2] in ("global", f"app:{app}")
    assert not list(tmp_path.iterdir()), "nothing in the scope ran"


def test_restore_hint_quotes_the_function_name() -> None:
    from guardrail.service.targets import restore_cli

    assert shlex.split(restore_cli("fn; rm -rf ~", 7))[4] == "fn; rm -rf ~"


# -- item 8: terminals ----------------------------------------------------------------------------------


def test_status_shows_an_injected_app_name_as_one_escaped_row(apps: World) -> None:
    spend_as(apps, INJECT_ROWS)
    code, out, _ = run("status")
    assert code == 0
    assert "\x1b" not in out
    assert [line for line in out.splitlines() if line.startswith("global:")] == ["global: SHUTDOWN"]
    assert "app:evil\\nglobal: NORMAL\\x1b[2J\\x1b[32m ok: SHUTDOWN" in out


def test_history_keeps_one_entry_per_row_whatever_the_reason_holds(apps: World) -> None:
    spend_as(apps, "chat-api")
    reason = "fixed\n2026-01-01 00:00:00  global  root  shutdown->normal  forged\x1b[8m"
    code, _, err = run("reset", "--scope", "global", "--reason", reason, "--yes")
    assert code == 0, err
    code, out, _ = run("history", "--scope", "global")
    rows = out.splitlines()
    entries = json.loads(run("history", "--scope", "global", "--json")[1])
    assert len(rows) == 1 + len(entries)  # the header, then one row per entry
    assert "\x1b" not in out and "fixed\\n2026-01-01" in out


def test_reset_output_and_errors_escape_the_scope(apps: World) -> None:
    spend_as(apps, INJECT_ROWS)
    code, out, err = run("reset", "--scope", f"app:{INJECT_ROWS}", "--reason", "ok\x1b[2J", "--yes")
    assert code == 0, err
    assert "\x1b" not in out
    assert out.splitlines()[0].startswith("scope app:evil\\nglobal: NORMAL")
    code, _, err = run("reset", "--scope", "nobody:\x1b[31m\nfake", "--reason", "x", "--yes")
    assert code == 2 and "\x1b" not in err and err.count("\n") == 1


def test_replay_report_escapes_outside_text(tmp_path: Path) -> None:
    lines = [log_line(record(f"r-{i}", input_tokens=100_000, output_tokens=10_000, app=INJECT_ROWS)) for i in range(60)]
    lines.append('{"bad": "\x1b[2J\\nnot a record"}')
    path = tmp_path / "export.jsonl"
    path.write_text("\n".join(lines) + "\n")
    budgets = json.dumps([{"scope": "global"}, {"scope": "app:*"}])
    code, out, _ = run("replay", str(path), "--budgets", budgets)
    assert code == 0 and "\x1b" not in out
    assert not any(line.startswith("global: NORMAL") for line in out.splitlines())


# -- item 9: Slack --------------------------------------------------------------------------------------


def mrkdwn_objects(payload: Any) -> list[dict[str, Any]]:
    if isinstance(payload, dict):
        found = [payload] if payload.get("type") == "mrkdwn" else []
        return found + [o for v in payload.values() for o in mrkdwn_objects(v)]
    if isinstance(payload, list):
        return [o for v in payload for o in mrkdwn_objects(v)]
    return []


def test_slack_text_from_outside_is_inert(apps: World) -> None:
    spend_as(apps, "<!channel> @here <http://evil.example|click> #general")
    assert apps.slack
    for message in apps.slack:
        objects = mrkdwn_objects(message["blocks"])
        assert objects and all(o.get("verbatim") is True for o in objects)
        body = json.dumps(message)
        assert "<!channel>" not in body and "<http://evil" not in body
        assert "&lt;!channel&gt;" in body
