"""How the CLI is entered (issue 17, item 3): `--version`, `python -m guardrail`, shell completion."""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from guardrail.tools.cli import main, version

REPO = Path(__file__).resolve().parents[2]


def python(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=60)


def test_python_dash_m_guardrail_is_the_cli_and_says_its_version() -> None:
    done = python("-m", "guardrail", "--version")
    assert done.returncode == 0 and done.stderr == ""
    assert done.stdout == f"guardrail {version()}\n" and version()[0].isdigit()
    done = python("-m", "guardrail", "replay", "--help")
    assert done.returncode == 0 and "usage: guardrail replay" in done.stdout


def test_importing_guardrail_never_loads_the_tools() -> None:
    done = python("-c", "import guardrail, sys; print(sorted(m for m in sys.modules if m.startswith('guardrail.')))")
    assert done.returncode == 0 and "guardrail.tools" not in done.stdout


def completion(shell: str) -> str:
    pytest.importorskip("shtab")
    out, err = io.StringIO(), io.StringIO()
    assert main(["completion", shell], out=out, err=err) == 0 and err.getvalue() == ""
    return out.getvalue()


def test_bash_completion_knows_the_commands_and_their_options(tmp_path: Path) -> None:
    script = completion("bash")
    (commands,) = [line for line in script.splitlines() if line.startswith("_shtab_guardrail_subparsers=(")]
    assert {"status", "history", "reset", "replay", "demo", "table", "completion"} <= set(commands[29:-1].split())
    assert "--snooze-for" in script and "_shtab_guardrail_replay_pos_0_COMPGEN=_shtab_compgen_files" in script
    (tmp_path / "guardrail.bash").write_text(script)
    # Sourced into bash, it registers itself for `guardrail`.
    done = subprocess.run(
        ["bash", "-c", f"source {tmp_path / 'guardrail.bash'} && complete -p guardrail"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0 and "guardrail" in done.stdout


def test_zsh_completion_is_a_compdef_script() -> None:
    script = completion("zsh")
    assert script.startswith("#compdef guardrail") and "history" in script and "--rearm" in script
    if shutil.which("zsh"):  # pragma: no cover - CI images may not have zsh
        done = subprocess.run(["zsh", "-n", "-c", script], capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr


# -- 10: a table to try the CLI against ---------------------------------------------------------------


def test_table_create_makes_a_table_the_cli_can_use(aws: None, monkeypatch: pytest.MonkeyPatch) -> None:
    import boto3

    monkeypatch.setenv("GUARDRAIL_TABLE_NAME", "guardrail-dev")
    out, err = io.StringIO(), io.StringIO()
    assert main(["table", "create"], out=out, err=err) == 0, err.getvalue()
    assert out.getvalue().startswith("created table 'guardrail-dev' in Region us-east-1 at https://dynamodb.")
    table = boto3.client("dynamodb", region_name="us-east-1").describe_table(TableName="guardrail-dev")["Table"]
    assert {k["AttributeName"]: k["KeyType"] for k in table["KeySchema"]} == {"pk": "HASH", "sk": "RANGE"}

    out = io.StringIO()
    assert main(["status"], out=out, err=err) == 0 and "global: NORMAL" in out.getvalue()

    err = io.StringIO()
    assert main(["table", "create"], out=io.StringIO(), err=err) == 1
    assert err.getvalue() == (
        "guardrail: table 'guardrail-dev' already exists in Region us-east-1 at "
        "https://dynamodb.us-east-1.amazonaws.com: nothing changed\n"
    )


def test_table_create_by_name_says_what_to_export(aws: None) -> None:
    out = io.StringIO()
    assert main(["table", "create", "--table", "mine"], out=out, err=io.StringIO()) == 0
    assert "next: export GUARDRAIL_TABLE_NAME=mine" in out.getvalue()


def test_aws_region_alone_is_enough(aws: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_DEFAULT_REGION")  # boto3 reads only this one; the README says AWS_REGION
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    out, err = io.StringIO(), io.StringIO()
    assert main(["table", "create"], out=out, err=err) == 0, err.getvalue()
    assert "in Region eu-west-1" in out.getvalue()


def test_main_writes_version_help_and_usage_errors_to_the_streams_it_is_given(
    capsys: pytest.CaptureFixture[str],
) -> None:
    out, err = io.StringIO(), io.StringIO()
    assert main(["--version"], out=out, err=err) == 0
    assert out.getvalue() == f"guardrail {version()}\n" and err.getvalue() == ""
    out, err = io.StringIO(), io.StringIO()
    assert main(["history", "--since", "soon"], out=out, err=err) == 2
    assert out.getvalue() == "" and "usage: guardrail history" in err.getvalue() and "soon" in err.getvalue()
    assert capsys.readouterr() == ("", "")  # nothing went to the real terminal
