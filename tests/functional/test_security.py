"""Security: reset needs a reason and records its actor; the guardrail cannot target itself; IAM in the
synthesized template is least privilege (the security angle on top of tests/infra/test_iam.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import boto3
import pytest

import handlers.reset
from guardrail.core.config import load_settings
from guardrail.core.errors import ConfigError
from guardrail.core.models import Budget, Flag, Level, TargetHold, Thresholds
from guardrail.service.effects import EffectReport, Effects
from guardrail.service.runtime import default_runtime
from guardrail.store.flags import FlagStore
from tests.support.common import TABLE
from tests.support.synth import (
    ACCOUNT,
    CONCURRENCY,
    PREFIX,
    REGION,
    ROLE_TARGET,
    Synth,
    actions,
    as_list,
    resolve,
    statements_by_function,
)
from tests.support.world import World, batch

OWN_ARNS = {f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{PREFIX}-{r}" for r in ("usage", "alarm", "reset", "schedule")}


@pytest.fixture
def world(ddb: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    yield World(monkeypatch)
    default_runtime.cache_clear()


# -- reset ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "event",
    [
        {"scope": "global", "actor": "alice"},
        {"scope": "global", "reason": "", "actor": "alice"},
        {"scope": "global", "reason": " \n\t ", "actor": "alice"},
        {"scope": "global", "reason": "fixed"},
        {"scope": "global", "reason": "fixed", "actor": "   "},
        {"scope": "global", "reason": 42, "actor": "alice"},
        {"scope": "global", "reason": "fixed", "actor": "alice", "as_user": "root"},  # no smuggled fields
    ],
)
def test_reset_without_reason_or_actor_is_refused_and_changes_nothing(world: World, event: dict[str, Any]) -> None:
    world.usage(batch("a", 60))
    before = world.flag()
    result = handlers.reset.handler(event, world.ctx)
    assert not result["ok"] and "refused" in result["error"]
    assert world.flag() == before and world.concurrency("chat-api") == 0


def test_reset_records_actor_reason_and_before_after_in_the_audit_trail(world: World) -> None:
    world.usage(batch("a", 60))
    result = handlers.reset.handler(
        {"scope": "global", "reason": "  runaway loop fixed  ", "actor": "alice@example.com"}, world.ctx
    )
    assert result["ok"]
    history = FlagStore(boto3.client("dynamodb", region_name="us-east-1"), TABLE).history("global")
    (reset,) = [e for e in history if e.action == "shutdown->normal"]
    # A direct invoke carries no verified identity: the claimed name is a note, never the actor.
    assert (reset.actor, reset.reason) == (
        "unverified:direct-invoke",
        "runaway loop fixed [note: claimed actor alice@example.com]",
    )
    assert reset.before["level"] == "shutdown" and reset.after["level"] == "normal"
    assert reset.before["targets"]["chat-api"]["saved"] == 7  # what was restored is on record
    # The effects that followed are audited too, by the guardrail, not in the on-call's name.
    assert {e.actor for e in history if e.action.startswith("restore:")} == {"guardrail"}


def test_reset_of_an_unknown_scope_is_refused(world: World) -> None:
    result = handlers.reset.handler({"scope": "app:ghost", "reason": "x", "actor": "alice"}, world.ctx)
    assert not result["ok"] and "no budget governs" in result["error"]


# -- the guardrail cannot target itself --------------------------------------------------------------


@pytest.mark.parametrize(
    "targets",
    [
        "chat-api,guardrail-usage",
        f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:guardrail-usage",
        f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:guardrail-usage:live",
        "guardrail-usage:$LATEST",
        "guardrail-usage:7",
        f"{ACCOUNT}:function:guardrail-usage",
        f"{ACCOUNT}:function:guardrail-usage:live",
        f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:guardrail-usage:$LATEST",
    ],
)
def test_settings_naming_an_own_function_as_target_fail_at_start(targets: str) -> None:
    with pytest.raises(ConfigError, match=r"GUARDRAIL_TARGET_FUNCTIONS.*own functions"):
        load_settings(table_name=TABLE, target_functions=targets, own_functions="guardrail-usage,guardrail-alarm")


@pytest.mark.parametrize(
    "own", ["guardrail-reset", f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:guardrail-reset:prod", "guardrail-reset:3"]
)
@pytest.mark.parametrize("target", ["guardrail-reset:$LATEST", f"{ACCOUNT}:function:guardrail-reset"])
def test_own_functions_in_any_form_are_refused_in_budgets_too(own: str, target: str) -> None:
    budgets = json.dumps([{"scope": "global"}, {"scope": "app:x", "targets": ["chat-api", target]}])
    with pytest.raises(ConfigError, match=r"GUARDRAIL_BUDGETS.*own functions"):
        load_settings(table_name=TABLE, budgets=budgets, own_functions=own)


def test_every_form_of_one_target_is_one_target_held_once(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    forms = [
        "chat-api:$LATEST",
        f"{ACCOUNT}:function:chat-api",
        f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:chat-api:live",
    ]
    monkeypatch.setenv("GUARDRAIL_TARGET_FUNCTIONS", ",".join(forms))
    world.usage(batch("a", 60))
    assert world.concurrency("chat-api") == 0
    assert list(world.flag().targets) == ["chat-api"] and world.flag().targets["chat-api"].saved == 7
    result = handlers.reset.handler({"scope": "global", "reason": "drill", "actor": "alice"}, world.ctx)
    assert result["ok"] and world.concurrency("chat-api") == 7


def test_budget_targets_naming_an_own_function_fail_at_start() -> None:
    budgets = json.dumps([{"scope": "global"}, {"scope": "app:x", "targets": ["guardrail-alarm"]}])
    with pytest.raises(ConfigError, match="own functions"):
        load_settings(table_name=TABLE, budgets=budgets, own_functions="guardrail-usage,guardrail-alarm")


def test_effects_never_stop_the_running_function_even_if_configuration_slipped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Defence in depth: the function's own name (from the Lambda environment) is never a target.
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "guardrail-usage")
    calls: list[str] = []

    class Lambda:
        def get_function_concurrency(self, FunctionName: str) -> dict[str, Any]:
            return {}

        def put_function_concurrency(self, FunctionName: str, **_: Any) -> None:
            calls.append(FunctionName)

    class Flags:
        def update(self, flag: Flag, *, actor: str, action: str, reason: str, extra: Any = (), **changes: Any) -> Flag:
            return replace(flag, version=flag.version + 1, **changes)

    class Targets:  # shared target items, in memory
        def __init__(self) -> None:
            self.items: dict[str, TargetHold] = {}

        def get(self, function: str) -> TargetHold | None:
            return self.items.get(function)

        def get_many(self, functions: list[str]) -> dict[str, TargetHold | None]:
            return {f: self.items.get(f) for f in functions}

        def take_request(self, function: str, scope: str, saved: int | None, seen: Any) -> dict[str, Any]:
            self.items[function] = TargetHold(function, saved, frozenset({scope}))  # as the flag's transaction would
            return {}

    effects = Effects(Flags(), lambda_factory=Lambda, notifier=None, targets=Targets())  # type: ignore[arg-type]
    budget = Budget(
        selector="global",
        window="day",
        thresholds=Thresholds(alert=1, throttle=2, shutdown=3),  # type: ignore[arg-type]
        targets=("chat-api", f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:guardrail-usage"),
    )
    report = EffectReport(scope="global", level=Level.SHUTDOWN)
    effects.shutdown(Flag(scope="global", level=Level.SHUTDOWN, version=1, applied=False), budget, report)
    assert calls == ["chat-api"]
    assert any("refused to stop the guardrail's own functions" in f for f in report.failures)


# -- IAM in the synthesized template -----------------------------------------------------------------


def all_statements(synth: Synth) -> list[dict[str, Any]]:
    return [
        st
        for policy in synth.of_type("AWS::IAM::Policy").values()
        for st in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


def test_concurrency_apis_never_on_a_wildcard_resource(synth: Synth) -> None:
    for st in all_statements(synth):
        if actions(st) & CONCURRENCY or any(a.startswith("lambda:") for a in actions(st)):
            for resource in as_list(resolve(st["Resource"])):
                assert isinstance(resource, str) and "*" not in resource, st


def test_the_guardrails_own_functions_are_never_concurrency_targets(synth: Synth) -> None:
    own = {
        resolve(
            {
                "Fn::Join": [
                    "",
                    ["arn:aws:lambda:", {"Ref": "AWS::Region"}, ":", {"Ref": "AWS::AccountId"}, f":function:{name}"],
                ]
            }
        )
        for name in (f["Properties"]["FunctionName"] for f in synth.of_type("AWS::Lambda::Function").values())
    }
    assert own >= OWN_ARNS
    for st in all_statements(synth):
        if actions(st) & CONCURRENCY:
            assert not own & set(as_list(resolve(st["Resource"]))), st
    for fn in synth.of_type("AWS::Lambda::Function").values():
        env = fn["Properties"].get("Environment", {}).get("Variables", {})
        if "GUARDRAIL_TARGET_FUNCTIONS" in env:
            named = {t.rsplit(":", 1)[-1] for t in str(env["GUARDRAIL_TARGET_FUNCTIONS"]).split(",")}
            assert not named & {o.rsplit(":", 1)[-1] for o in own}
            assert env.get("GUARDRAIL_OWN_FUNCTIONS"), "the functions must know their own names"


def test_only_the_guardrail_functions_can_change_concurrency_and_nothing_can_escalate_privileges(
    synth: Synth,
) -> None:
    dangerous = {
        "iam:CreatePolicy",
        "iam:AttachRolePolicy",
        "iam:PutRolePolicy",
        "iam:CreateRole",
        "lambda:UpdateFunctionCode",
        "lambda:UpdateFunctionConfiguration",
        "lambda:AddPermission",
        "sts:AssumeRole",
    }
    grants = statements_by_function(synth)
    for fn, statements in grants.items():
        granted = set().union(*(actions(s) for s in statements)) if statements else set()
        # A restore (a delete, for a target that had no reservation) runs wherever a flag leaves shutdown.
        guardrail = fn in {f"{PREFIX}-{role}" for role in ("usage", "alarm", "reset", "schedule", "slack")}
        # The one exception: the role targets' deny (issue 18) needs iam:PutRolePolicy, granted to the
        # enforcing functions on exactly the configured role ARNs (literal strings: never "*", never a role
        # of this stack, which synth refuses).
        assert not granted & (dangerous - {"iam:PutRolePolicy"}), fn
        assert ("iam:PutRolePolicy" in granted) == guardrail, fn
        for st in statements:
            if "iam:PutRolePolicy" in actions(st):
                assert st["Effect"] == "Allow" and as_list(st["Resource"]) == [ROLE_TARGET], st
        assert ("lambda:DeleteFunctionConcurrency" in granted) == guardrail, fn
        for st in statements:
            if "iam:PassRole" in actions(st):  # only to Bedrock, only its log delivery role
                assert st["Condition"] == {"StringEquals": {"iam:PassedToService": "bedrock.amazonaws.com"}}
                assert "*" not in json.dumps(st["Resource"])


def test_no_allow_statement_grants_a_whole_service_or_uses_not_action(synth: Synth) -> None:
    for st in all_statements(synth):
        assert "NotAction" not in st and "NotResource" not in st, st
        if st["Effect"] == "Allow":
            assert not any("*" in a for a in actions(st)), st


def test_the_slack_secret_is_readable_only_by_functions_that_alert_and_only_that_secret(synth: Synth) -> None:
    for fn, statements in statements_by_function(synth).items():
        for st in statements:
            if any(a.startswith("secretsmanager:") for a in actions(st)):
                assert actions(st) <= {"secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"}, fn
                for resource in as_list(resolve(st["Resource"])):
                    assert "guardrail/slack" in json.dumps(resource), (fn, resource)
