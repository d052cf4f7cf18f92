"""Issue 18, part 1: an IAM role is a shutdown target like a function. Shutdown puts the guardrail's deny
policy on it, held per scope; the last holder's reset removes exactly that policy; the schedule run puts a
deleted deny back (and says so once); a policy of the guardrail's name it did not create is refused."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest

import guardrail.service.oncall  # noqa: F401
import handlers.reset
import handlers.schedule
from guardrail.service.role_deny import DENIED_ACTIONS, POLICY_NAME
from guardrail.service.runtime import build
from guardrail.tools.status import reset_preview, status_document
from tests.support.factories import log_line, logs_event, record
from tests.support.world import World, batch

ROLE = "arn:aws:iam::123456789012:role/teams/batch-jobs"
LOW = {"alert": 1, "throttle": 2, "shutdown": 3}
APP_POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "bedrock:InvokeModel", "Resource": "*"}],
}


@pytest.fixture
def iam(world: World) -> Any:
    client = boto3.client("iam", region_name="us-east-1")
    client.create_role(RoleName="batch-jobs", Path="/teams/", AssumeRolePolicyDocument="{}")
    client.put_role_policy(RoleName="batch-jobs", PolicyName="app-access", PolicyDocument=json.dumps(APP_POLICY))
    return client


def policies(iam: Any) -> dict[str, Any]:
    names = iam.list_role_policies(RoleName="batch-jobs")["PolicyNames"]
    return {n: iam.get_role_policy(RoleName="batch-jobs", PolicyName=n)["PolicyDocument"] for n in names}


def assert_denied(iam: Any) -> None:
    found = policies(iam)
    assert found["app-access"] == APP_POLICY  # the role's own policy is never touched
    (statement,) = found[POLICY_NAME]["Statement"]
    assert statement["Effect"] == "Deny" and statement["Resource"] == "*"
    assert {"bedrock:InvokeModel", "bedrock:InvokeModelWithResponseStream"} <= set(statement["Action"])
    assert set(statement["Action"]) == set(DENIED_ACTIONS)


def two_budgets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "GUARDRAIL_BUDGETS",
        json.dumps(
            [
                {"scope": "global", "thresholds": LOW, "targets": ["chat-api", ROLE]},
                {"scope": "app:x", "thresholds": LOW, "targets": [ROLE]},
            ]
        ),
    )


def spend_over_both(world: World) -> dict[str, Any]:
    now = datetime.now(UTC)
    lines = [log_line(record(f"s-{i}", input_tokens=100_000, output_tokens=10_000, at=now, app="x")) for i in range(7)]
    return world.usage(logs_event(lines))


def role_entry(scope: str) -> dict[str, Any]:
    doc = status_document(build())
    entry = next(s for s in doc["scopes"] if s["scope"] == scope)
    return next(t for t in entry["targets"] if t["function"] == ROLE)


def test_a_role_is_denied_at_shutdown_held_by_two_budgets_and_restored_by_the_last_reset(
    world: World, iam: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    two_budgets(monkeypatch)
    result = spend_over_both(world)
    assert {"global: normal -> shutdown", "app:x: normal -> shutdown"} <= set(result["transitions"]), result
    assert_denied(iam)
    assert world.concurrency("chat-api") == 0
    pages = world.sns_messages()
    assert any(f"Bedrock invoke deny on role {ROLE}" in p for p in pages), pages
    entry = role_entry("global")
    assert entry["kind"] == "role" and entry["current"] == "denied" and entry["status"] == "applied"
    assert entry["holders"] == ["app:x", "global"] and entry["saved"] == "none"
    assert any(
        "remove the guardrail's deny policy) (now denied)" in r for r in reset_preview(build(), "app:x").restores
    )

    first = handlers.reset.handler({"scope": "global", "reason": "loop fixed", "actor": "alice"}, world.ctx)
    assert first["ok"], first
    assert_denied(iam)  # app:x still holds it
    assert world.concurrency("chat-api") == 7
    (notice,) = world.sns_messages()
    assert f"{ROLE} stays denied: still held by app:x" in notice
    assert role_entry("app:x")["holders"] == ["app:x"]

    last = handlers.reset.handler({"scope": "app:x", "reason": "loop fixed", "actor": "alice"}, world.ctx)
    assert last["ok"], last
    assert policies(iam) == {"app-access": APP_POLICY}  # exactly the guardrail's policy removed
    (notice,) = world.sns_messages()
    assert f"restored {ROLE} to no deny" in notice
    assert role_entry("app:x")["holders"] == [] and world.flag().targets == {}


def test_a_deny_deleted_during_the_incident_is_put_back_by_the_schedule_and_said_once(
    world: World, iam: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GUARDRAIL_TARGET_ROLES", ROLE)
    world.usage(batch("a", 60))
    assert_denied(iam)
    world.sns_messages()
    iam.delete_role_policy(RoleName="batch-jobs", PolicyName=POLICY_NAME)  # someone "fixed" it by hand

    report = handlers.schedule.handler({}, world.ctx)
    assert report["failures"] == [], report
    assert any(f"Bedrock deny re-applied on role {ROLE}" in r for r in report["repaired"]), report
    assert_denied(iam)
    (notice,) = world.sns_messages()
    assert "Bedrock deny re-applied" in notice
    again = handlers.schedule.handler({}, world.ctx)
    assert again["repaired"] == [] and world.sns_messages() == []  # said once

    assert handlers.reset.handler({"scope": "global", "reason": "drill", "actor": "alice"}, world.ctx)["ok"]
    assert policies(iam) == {"app-access": APP_POLICY}


def test_a_policy_of_the_guardrails_name_it_did_not_create_is_refused_never_overwritten(
    world: World, iam: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    theirs = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]}
    iam.put_role_policy(RoleName="batch-jobs", PolicyName=POLICY_NAME, PolicyDocument=json.dumps(theirs))
    monkeypatch.setenv("GUARDRAIL_TARGET_ROLES", ROLE)
    world.usage(batch("a", 60))
    assert policies(iam)[POLICY_NAME] == theirs
    assert world.concurrency("chat-api") == 0  # the rest of the shutdown stands
    shutdown = [p for p in world.sns_messages() if "SHUTDOWN" in p]
    assert len(shutdown) == 1 and "did not put there (configuration error" in shutdown[0]
    flag = world.flag()
    assert flag.applied and flag.targets[ROLE].status == "refused"
    assert role_entry("global")["status"] == "refused"

    report = handlers.schedule.handler({}, world.ctx)
    assert not any(ROLE in r for r in report["repaired"] + report["failures"]), report
    assert world.sns_messages() == []  # said once

    result = handlers.reset.handler({"scope": "global", "reason": "drill", "actor": "alice"}, world.ctx)
    assert result["ok"], result
    assert policies(iam)[POLICY_NAME] == theirs  # not theirs to delete either


def test_dry_run_says_what_it_would_deny_and_touches_no_role(
    world: World, iam: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GUARDRAIL_TARGET_ROLES", ROLE)
    monkeypatch.setenv("GUARDRAIL_MODE", "dry-run")
    world.usage(batch("a", 60))
    assert policies(iam) == {"app-access": APP_POLICY}
    pages = world.sns_messages()
    assert any(f"Bedrock invoke deny on role {ROLE}" in p and "no deny" in p for p in pages), pages
    assert any("would" in p.lower() for p in pages)


def test_a_role_that_does_not_exist_is_said_once_and_shown_missing(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    ghost = "arn:aws:iam::123456789012:role/ghost"
    monkeypatch.setenv("GUARDRAIL_TARGET_ROLES", ghost)
    world.usage(batch("a", 60))
    assert world.flag().targets[ghost].status == "missing"
    shutdown = [p for p in world.sns_messages() if "SHUTDOWN" in p]
    assert len(shutdown) == 1 and f"{ghost} does not exist" in shutdown[0]
    handlers.schedule.handler({}, world.ctx)
    assert world.sns_messages() == []


@pytest.mark.parametrize(
    "value",
    ["arn:aws:iam::123456789012:user/alice", "arn:aws:iam::12345:role/x", "arn:aws:iam::123456789012:role/"],
)
def test_a_role_target_that_is_no_role_arn_fails_at_start_naming_the_setting(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from guardrail.core.config import load_settings
    from guardrail.core.errors import ConfigError

    monkeypatch.setenv("GUARDRAIL_TARGET_ROLES", value)
    with pytest.raises(ConfigError, match=r"GUARDRAIL_TARGET_ROLES.*not an IAM role ARN"):
        load_settings()
    monkeypatch.delenv("GUARDRAIL_TARGET_ROLES")
    monkeypatch.setenv("GUARDRAIL_BUDGETS", json.dumps([{"scope": "global", "targets": [value]}]))
    with pytest.raises(ConfigError, match=r"GUARDRAIL_BUDGETS.*not an IAM role ARN"):
        load_settings()


@pytest.mark.parametrize("at", range(1, 25))
def test_a_reset_at_any_aws_call_of_a_role_shutdown_leaves_no_deny_unrecorded(
    world: World, iam: Any, monkeypatch: pytest.MonkeyPatch, at: int
) -> None:
    import threading

    from guardrail.core.models import Level
    from guardrail.service.runtime import default_runtime
    from tests.support.interleave import Stepper

    monkeypatch.setenv("GUARDRAIL_TARGET_FUNCTIONS", "")
    monkeypatch.setenv("GUARDRAIL_TARGET_ROLES", ROLE)
    stepper = Stepper(default_runtime())
    shutdown = threading.Thread(target=world.usage, args=(batch("a", 60),))
    stepper.arm(shutdown, at)
    shutdown.start()
    if not stepper.paused_in(shutdown):
        shutdown.join()
        pytest.skip(f"the shutdown makes fewer than {at} AWS calls")
    handlers.reset.handler({"scope": "global", "reason": "drill", "actor": "alice"}, world.ctx)
    stepper.resume.set()
    shutdown.join(30)
    for _ in range(2):  # the schedule run repairs; a second one changes nothing
        handlers.schedule.handler({}, world.ctx)
        flag = world.flag()
        held = flag.level == Level.SHUTDOWN and ROLE in flag.targets
        assert (POLICY_NAME in policies(iam)) == held, (at, flag)
        assert policies(iam)["app-access"] == APP_POLICY
