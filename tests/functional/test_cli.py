"""`guardrail status / history / reset` as on-call meets them: moto AWS, the caller's own identity."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import boto3
import pytest

from guardrail.core.models import Level
from guardrail.store.flags import FlagStore
from guardrail.tools.cli import main
from guardrail.tools.embedded_aws import create_function
from guardrail.tools.status import CONTRACT_KEYS
from tests.support.common import TABLE
from tests.support.factories import record

MOTO_ACTOR = "arn:aws:sts::123456789012:user/moto"  # what moto's GetCallerIdentity answers


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


class Account:
    """A deployed guardrail (table, two targets) whose global scope is shut down."""

    def __init__(self) -> None:
        self.lam = boto3.client("lambda", region_name="us-east-1")
        role = boto3.client("iam", region_name="us-east-1").create_role(RoleName="fn", AssumeRolePolicyDocument="{}")
        create_function(self.lam, role["Role"]["Arn"], "chat-api", 7)
        create_function(self.lam, role["Role"]["Arn"], "worker", None)

    def concurrency(self, name: str) -> int | None:
        return self.lam.get_function_concurrency(FunctionName=name).get("ReservedConcurrentExecutions")

    def flag(self) -> Any:
        return FlagStore(boto3.client("dynamodb", region_name="us-east-1"), TABLE).get("global")

    def spend(self, n: int, prefix: str = "r") -> None:
        from datetime import UTC, datetime

        from guardrail.service.runtime import build

        now = datetime.now(UTC)
        runtime = build()
        # 100k input + 10k output tokens of Sonnet 4.5 (us.) = $0.495 each
        records = [record(f"{prefix}-{i}", input_tokens=100_000, output_tokens=10_000, at=now) for i in range(n)]
        runtime.engine.ingest(records)


@pytest.fixture
def account(ddb: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Account]:
    monkeypatch.setenv("GUARDRAIL_TABLE_NAME", TABLE)
    monkeypatch.setenv("GUARDRAIL_TARGET_FUNCTIONS", "chat-api,worker")
    yield Account()


@pytest.fixture
def shut_down(account: Account) -> Account:
    account.spend(60)  # $29.70: past shutdown
    assert account.flag().level == Level.SHUTDOWN and account.concurrency("chat-api") == 0
    return account


# -- status --------------------------------------------------------------------------------------------


def test_status_json_round_trips_the_contract(shut_down: Account) -> None:
    code, out, err = run("status", "--json")
    assert code == 0 and err == ""
    document = json.loads(out)
    assert list(document) == ["scopes"]
    (scope,) = document["scopes"]
    assert set(CONTRACT_KEYS) <= set(scope)
    assert scope["scope"] == "global" and scope["level"] == "shutdown"
    assert scope["window"]["kind"] == "day"
    # Money is decimal strings, exact: 60 x $0.495.
    assert isinstance(scope["spend_usd"], str) and Decimal(scope["spend_usd"]) == Decimal("29.700")
    assert scope["thresholds"] == {"alert": "5", "throttle": "10", "shutdown": "25"}
    assert scope["model_downgrades"]["claude-sonnet"] == "claude-haiku"
    targets = {t["function"]: t for t in scope["targets"]}
    assert (targets["chat-api"]["saved"], targets["chat-api"]["current"]) == (7, 0)
    assert (targets["worker"]["saved"], targets["worker"]["current"]) == ("none", 0)
    assert "shutdown threshold" in scope["reason"] and scope["since"]
    # Round trip: printing the parsed document again gives the same JSON.
    assert json.loads(json.dumps(document)) == document


def test_status_table_says_level_why_and_targets(shut_down: Account) -> None:
    code, out, _ = run("status")
    assert code == 0
    assert "global: SHUTDOWN" in out
    assert "$29.70" in out and "shutdown $25.00 (reached)" in out
    assert "claude-sonnet -> claude-haiku" in out
    lines = {
        line.split()[0]: line.split() for line in out.splitlines() if line.strip().startswith(("chat-api", "worker"))
    }
    assert lines["chat-api"][1:4] == ["7", "0", "applied"]
    assert lines["worker"][1:4] == ["none", "0", "applied"]


def test_status_of_a_quiet_account_shows_the_budget_at_normal(account: Account) -> None:
    code, out, _ = run("status", "--json")
    scope = json.loads(out)["scopes"][0]
    assert code == 0 and scope["level"] == "normal" and scope["spend_usd"] == "0"
    assert {t["function"]: (t["saved"], t["current"]) for t in scope["targets"]} == {
        "chat-api": (None, 7),
        "worker": (None, "none"),
    }


# -- reset ---------------------------------------------------------------------------------------------


def test_reset_without_reason_refuses_and_changes_nothing(shut_down: Account) -> None:
    for argv in (["reset", "--scope", "global", "--yes"], ["reset", "--reason", "   ", "--yes"]):
        code, out, err = run(*argv)
        assert code == 2 and out == ""
        assert err.count("\n") == 1 and "--reason" in err
    assert shut_down.flag().level == Level.SHUTDOWN and shut_down.concurrency("chat-api") == 0


def test_reset_asks_and_does_nothing_unless_confirmed(shut_down: Account, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("builtins.input", lambda *prompt: "n")
    code, out, err = run("reset", "--reason", "loop fixed")
    assert code == 1 and "not confirmed" in err
    assert "will restore chat-api to reserved concurrency 7 (now 0)" in out
    assert "will restore worker to no reserved concurrency (now 0)" in out
    assert shut_down.flag().level == Level.SHUTDOWN and shut_down.concurrency("chat-api") == 0

    def no_terminal(*prompt: str) -> str:
        raise EOFError

    monkeypatch.setattr("builtins.input", no_terminal)
    code, _, err = run("reset", "--reason", "loop fixed")
    assert code == 1 and "not confirmed" in err and shut_down.concurrency("chat-api") == 0


def test_confirmed_reset_restores_audits_the_caller_and_rearms(
    shut_down: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("builtins.input", lambda *prompt: "y")
    code, out, err = run("reset", "--scope", "global", "--reason", "loop fixed in chat-api 1.4.2")
    assert code == 0, err
    assert "restored chat-api to 7" in out and "restored worker to none" in out
    assert "re-arm: thresholds count from today's $29.70 (alert at $34.70" in out
    assert shut_down.concurrency("chat-api") == 7 and shut_down.concurrency("worker") is None
    assert shut_down.flag().level == Level.NORMAL

    code, out, _ = run("history", "--action=->normal", "--json")
    (entry,) = json.loads(out)
    assert entry["actor"] == MOTO_ACTOR and entry["reason"] == "loop fixed in chat-api 1.4.2"
    assert (entry["level_before"], entry["level_after"]) == ("shutdown", "normal")

    # Re-armed: more spend below the next threshold (from $29.70) does not shut down again.
    shut_down.spend(8, prefix="after")
    assert shut_down.flag().level == Level.NORMAL

    code, _, err = run("reset", "--reason", "again", "--yes")
    assert code == 1 and "nothing to reset" in err and err.count("\n") == 1


def test_reset_snooze_and_json(shut_down: Account) -> None:
    code, out, _ = run("reset", "--reason", "load test", "--snooze-for", "2h", "--yes", "--json")
    assert code == 0
    result = json.loads(out)
    assert result["ok"] and result["rearm"]["snooze_until"]
    shut_down.spend(60, prefix="snoozed")  # another $29.70: snoozed, no escalation
    assert shut_down.flag().level == Level.NORMAL


def test_refused_restore_is_reported_with_the_next_step(shut_down: Account, monkeypatch: pytest.MonkeyPatch) -> None:
    from botocore.exceptions import ClientError

    from guardrail.service.runtime import build

    runtime = build()
    real = runtime.effects.lambda_client.put_function_concurrency

    def refuse(**kwargs: Any) -> Any:
        if kwargs["ReservedConcurrentExecutions"] > 0:
            raise ClientError(
                {"Error": {"Code": "InvalidParameterValueException", "Message": "below its minimum value of [100]."}},
                "PutFunctionConcurrency",
            )
        return real(**kwargs)

    monkeypatch.setattr(runtime.effects.lambda_client, "put_function_concurrency", refuse)
    monkeypatch.setattr("guardrail.tools.cli._runtime", lambda: runtime)
    code, out, _ = run("reset", "--reason", "drill", "--yes")
    assert code == 1
    assert "FAILED: chat-api: restore to 7 failed" in out and "put-function-concurrency" in out
    assert "next:" in out and "schedule run retries" in out
    assert shut_down.concurrency("worker") is None  # the other target was restored

    # Later, with AWS willing: a reset of a normal scope retries only the failed restore.
    monkeypatch.setattr(runtime.effects.lambda_client, "put_function_concurrency", real)
    code, out, _ = run("reset", "--reason", "pool freed", "--yes")
    assert code == 0 and "only the failed restores are retried" in out
    assert shut_down.concurrency("chat-api") == 7 and shut_down.flag().targets == {}


# -- history -------------------------------------------------------------------------------------------


def test_history_newest_first_and_filtered(shut_down: Account) -> None:
    code, out, _ = run("history", "--json", "--limit", "50")
    entries = json.loads(out)
    assert code == 0 and entries
    assert [e["at"] for e in entries] == sorted((e["at"] for e in entries), reverse=True)
    code, out, _ = run("history", "--action", "shutdown", "--since", "1h")
    assert code == 0 and "->shutdown" in out and "normal->alert" not in out
    code, out, _ = run("history", "--actor", "nobody-like-this")
    assert code == 0 and "no audit entries match" in out


# -- errors are one line and an exit code ----------------------------------------------------------------


def test_no_credentials_is_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    # A default session made by an earlier test would still hold that test's credentials.
    monkeypatch.setattr("boto3.DEFAULT_SESSION", None)
    for argv in (["status"], ["history"], ["reset", "--reason", "x", "--yes"]):
        code, out, err = run(*argv)
        assert code == 2 and out == ""
        assert err.startswith("guardrail: no AWS credentials") and err.count("\n") == 1


def test_missing_table_is_one_line(aws: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GUARDRAIL_TABLE_NAME", "not-deployed")
    for argv in (["status", "--json"], ["history"], ["reset", "--reason", "x", "--yes"]):
        code, out, err = run(*argv)
        assert code == 2 and out == ""
        assert "table was not found" in err and "GUARDRAIL_TABLE_NAME" in err and err.count("\n") == 1


def test_bad_setting_and_unknown_scope_are_one_line(account: Account, monkeypatch: pytest.MonkeyPatch) -> None:
    code, _, err = run("reset", "--scope", "tenant:acme", "--reason", "x", "--yes")
    assert code == 2 and "no budget governs scope 'tenant:acme'" in err and err.count("\n") == 1
    monkeypatch.setenv("GUARDRAIL_WINDOW", "week")
    code, _, err = run("status")
    assert code == 2 and "GUARDRAIL_WINDOW" in err and "hour, day, month" in err and err.count("\n") == 1


# -- region --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("default_region", [None, "eu-west-1"])
def test_aws_region_is_honoured_alone_and_over_aws_default_region(
    account: Account, monkeypatch: pytest.MonkeyPatch, default_region: str | None
) -> None:
    # Given the table in us-east-1, and only AWS_REGION naming it (AWS_DEFAULT_REGION unset or elsewhere)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    if default_region is None:
        monkeypatch.delenv("AWS_DEFAULT_REGION")
    else:
        monkeypatch.setenv("AWS_DEFAULT_REGION", default_region)
    # When on-call asks for the status, Then the CLI finds the table there
    code, out, err = run("status", "--json")
    assert (code, err) == (0, "")
    assert [s["scope"] for s in json.loads(out)["scopes"]] == ["global"]


def test_no_region_at_all_is_one_line_naming_aws_region(account: Account, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    code, out, err = run("status")
    assert code == 2 and out == ""
    assert "set AWS_REGION" in err and len(err.strip().splitlines()) == 1
