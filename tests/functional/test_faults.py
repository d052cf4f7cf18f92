"""Fault injection: the guardrail keeps working and loses nothing when its dependencies fail.

Faults are injected at the botocore layer with `before-call` event hooks on the runtime's own (moto)
clients: the hook answers in place of AWS with the real error code (and, for transactions, the real
CancellationReasons), so the client raises the same modelled exception class it raises in production,
after botocore's own retries would have given up. Crashes (a Lambda timeout or kill between two steps)
are a `BaseException`, so no `except Exception` in the code under test can swallow them.

Every test checks the same four things: no record lost, none counted twice, enforcement completes (now,
on the Lambda retry of the same event, or on the next schedule run), and the failure is visible.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import boto3
import pytest

import handlers.reset
import handlers.schedule
import handlers.usage
from guardrail.core.errors import LedgerError
from guardrail.core.models import Level
from guardrail.service.effects import Effects
from guardrail.service.notify import Notifier
from guardrail.service.observability import logger
from guardrail.service.runtime import Runtime, default_runtime
from guardrail.store.flags import FlagStore
from tests.support.common import TABLE, Output
from tests.support.world import WEBHOOK, World, batch

RECORD_USD = Decimal("0.495")  # one record of tests.test_pipeline.batch
SCHEDULED = {"source": "aws.events", "detail-type": "Scheduled Event"}


class LambdaCrash(BaseException):
    """The process died here (timeout, out of memory): nothing after this line ran."""


class Response:
    def __init__(self, status: int) -> None:
        self.status_code = status
        self.headers: dict[str, str] = {}


class Faults:
    """Answers chosen operations with AWS errors for their next N calls, then lets them through."""

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}
        self.injected: dict[str, int] = {}

    def inject(
        self,
        client: Any,
        operation: str,
        code: str,
        *,
        times: int = 1,
        status: int = 400,
        message: str = "injected fault",
        reasons: Callable[[int], list[dict[str, str]]] | None = None,
        when: Callable[[dict[str, Any]], bool] | None = None,
    ) -> None:
        service = client.meta.service_model.service_id.hyphenize()
        left = [times]

        def hook(params: dict[str, Any], **_: Any) -> Any:
            self.calls[operation] = self.calls.get(operation, 0) + 1
            body = params.get("body") or b""
            request = json.loads(body) if isinstance(body, bytes | str) and body[:1] in (b"{", "{") else {}
            if left[0] <= 0 or (when is not None and not when(request)):
                return None
            left[0] -= 1
            self.injected[operation] = self.injected.get(operation, 0) + 1
            parsed: dict[str, Any] = {
                "Error": {"Code": code, "Message": message},
                "ResponseMetadata": {"HTTPStatusCode": status},
            }
            if reasons is not None:
                parsed["CancellationReasons"] = reasons(len(request.get("TransactItems", [])))
            return Response(status), parsed

        client.meta.events.register(f"before-call.{service}.{operation}", hook)


@pytest.fixture
def world(ddb: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    yield World(monkeypatch)
    default_runtime.cache_clear()


@pytest.fixture
def runtime(world: World) -> Runtime:
    """The handlers' runtime with its clients created now (so faults can be hooked on them), no sleeping."""
    rt = default_runtime()
    rt.engine.ledger.sleep = lambda _: None
    assert rt.effects.notifier is not None
    rt.effects.notifier._sleep = lambda _: None
    for service in ("lambda", "sns", "secretsmanager"):
        rt.clients[service] = boto3.client(service, region_name="us-east-1")
    rt.effects._lambda = rt.clients["lambda"]
    return rt


@pytest.fixture
def faults() -> Faults:
    return Faults()


@pytest.fixture
def output(capsys: pytest.CaptureFixture[str]) -> Iterator[Output]:
    out = Output(capsys)
    yield out
    logger._logger.removeHandler(out.handler)
    assert WEBHOOK not in out.text()  # the secret never reaches a log line or a metric


def ledger_totals(world: World) -> tuple[int, Decimal]:
    day = [i for i in counters(world) if i["sk"]["S"].startswith("WINDOW#day#")]
    assert len(day) == 1
    return int(day[0]["requests"]["N"]), Decimal(day[0]["spend_usd"]["N"])


def counters(world: World) -> list[dict[str, Any]]:
    ddb = boto3.client("dynamodb", region_name="us-east-1")
    return list(
        ddb.query(
            TableName=TABLE,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": "SCOPE#global"}},
            ConsistentRead=True,
        )["Items"]
    )


def request_items() -> int:
    ddb = boto3.client("dynamodb", region_name="us-east-1")
    scan = ddb.scan(
        TableName=TABLE, FilterExpression="begins_with(pk, :p)", ExpressionAttributeValues={":p": {"S": "REQ#"}}
    )
    return len(scan["Items"])


def assert_counted_once(world: World, n: int) -> None:
    requests, spend = ledger_totals(world)
    assert requests == n and spend == RECORD_USD * n
    assert request_items() == n


def assert_shut_down(world: World) -> None:
    flag = world.flag()
    assert flag.level == Level.SHUTDOWN and flag.applied
    assert world.concurrency("chat-api") == 0 and world.concurrency("worker") == 0
    assert flag.targets["chat-api"].saved == 7 and flag.targets["worker"].saved is None


def assert_reset_restores(world: World) -> None:
    result = handlers.reset.handler({"scope": "global", "reason": "fault drill over", "actor": "alice"}, world.ctx)
    assert result["ok"], result
    assert world.concurrency("chat-api") == 7 and world.concurrency("worker") is None


def transaction_reasons(code: str) -> Callable[[int], list[dict[str, str]]]:
    """CancellationReasons: the first item failed with `code`, the rest were not evaluated."""
    return lambda n: [{"Code": code, "Message": "injected"}] + [{"Code": "None"}] * (n - 1)


# -- DynamoDB -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "reasons"),
    [
        ("ProvisionedThroughputExceededException", None),
        ("RequestLimitExceeded", None),
        ("TransactionInProgressException", None),
        ("ThrottlingException", None),
        ("TransactionCanceledException", transaction_reasons("TransactionConflict")),
        ("TransactionCanceledException", transaction_reasons("ThrottlingError")),
    ],
)
def test_ledger_throttled_or_conflicting_retries_and_counts_each_record_once(
    world: World, runtime: Runtime, faults: Faults, output: Output, code: str, reasons: Any
) -> None:
    faults.inject(runtime.engine.ledger.client, "TransactWriteItems", code, times=3, reasons=reasons)
    result = world.usage(batch("a", 12))
    assert result["recorded"] == 12 and faults.injected["TransactWriteItems"] == 3
    assert_counted_once(world, 12)
    assert world.flag().level == Level.ALERT  # $5.94: the transition still happened, once
    assert output.metric("RecordsIngested") == 12


def test_ledger_throttled_past_every_retry_raises_for_the_lambda_retry_which_counts_once(
    world: World, runtime: Runtime, faults: Faults, output: Output
) -> None:
    # 150 records over 2 scopes' counters: more than one transaction holds, so the batch claims its request
    # items (97, then 53) and then applies their sums. The first claim commits; the second never does.
    event = batch("a", 150)
    client = runtime.engine.ledger.client
    first_done: list[bool] = []
    healthy: list[bool] = []

    def second_transaction(request: dict[str, Any]) -> bool:
        if not first_done:
            first_done.append(True)
            return False
        return not healthy

    faults.inject(
        client, "TransactWriteItems", "ProvisionedThroughputExceededException", times=100, when=second_transaction
    )
    with pytest.raises(LedgerError, match="not counted"):
        world.usage(event)  # Lambda sees the error: async retry, then the DLQ; IngestErrors alarms
    assert request_items() == 97 and not counters(world)  # 97 requests claimed, nothing added to the counters yet
    healthy.append(True)
    # The Lambda retry delivers the same event again, with DynamoDB healthy: the same batch, continued.
    default_runtime.cache_clear()
    retry = world.usage(event)
    assert retry["recorded"] == 150 and retry["duplicates"] == 0
    assert_counted_once(world, 150)
    assert_shut_down(world)  # $74.25 crossed every threshold: the retry enforced it


def test_flag_transaction_conflict_fails_the_invocation_and_the_retry_escalates(
    world: World, runtime: Runtime, faults: Faults, output: Output
) -> None:
    # The ledger commits, then the flag transition's transaction is cancelled (a concurrent writer).
    def is_flag(request: dict[str, Any]) -> bool:
        return any("FLAG#" in json.dumps(item) for item in request.get("TransactItems", [])[:1])

    faults.inject(
        runtime.engine.flags.client,
        "TransactWriteItems",
        "TransactionCanceledException",
        times=1,
        reasons=transaction_reasons("TransactionConflict"),
        when=is_flag,
    )
    event = batch("a", 60)
    with pytest.raises(Exception, match="TransactionCanceled"):
        world.usage(event)
    assert_counted_once(world, 60)
    assert world.flag().level == Level.NORMAL  # the spend is in, the escalation is not yet
    retry = world.usage(event)  # the Lambda retry of the same event
    assert retry["recorded"] == 0 and retry["duplicates"] == 60
    assert_counted_once(world, 60)
    assert_shut_down(world)
    assert len(world.sns_messages()) == 1  # one message for normal -> shutdown, not one per attempt


def test_totals_read_throttled_after_commit_is_repaired_by_the_retry(
    world: World, runtime: Runtime, faults: Faults, output: Output
) -> None:
    faults.inject(runtime.engine.ledger.client, "BatchGetItem", "ProvisionedThroughputExceededException", times=1)
    event = batch("a", 60)
    with pytest.raises(Exception, match="ProvisionedThroughputExceeded"):
        world.usage(event)
    assert_counted_once(world, 60)
    world.usage(event)
    assert_counted_once(world, 60)
    assert_shut_down(world)


# -- SNS, Slack, Secrets Manager -------------------------------------------------------------------


def test_sns_throttled_then_delivered_once(world: World, runtime: Runtime, faults: Faults, output: Output) -> None:
    faults.inject(runtime.clients["sns"], "Publish", "Throttled", times=2)
    world.usage(batch("a", 60))
    assert_shut_down(world)
    assert len(world.sns_messages()) == 1 and len(world.slack) == 1
    assert faults.calls["Publish"] == 3
    assert output.metric("NotificationsFailed") == 0


def test_sns_down_and_slack_slow_never_delay_or_block_enforcement(
    world: World, runtime: Runtime, faults: Faults, output: Output, monkeypatch: pytest.MonkeyPatch
) -> None:
    faults.inject(runtime.clients["sns"], "Publish", "InternalError", times=100, status=500)
    timeouts: list[float] = []

    def slow(url: str, body: bytes, timeout: float) -> int:
        timeouts.append(timeout)
        raise TimeoutError(f"timed out after {timeout}s posting to {url}")  # the URL must not leak

    monkeypatch.setattr(runtime.effects.notifier, "_post", slow)
    world.usage(batch("a", 60))
    assert_counted_once(world, 60)
    assert_shut_down(world)
    assert timeouts == [3.0, 3.0, 3.0]  # bounded: three tries of at most 3 s each
    assert output.metric("NotificationsFailed") == 2  # sns and slack
    (error,) = [e for e in output.log_lines("ERROR") if e["message"] == "effects"]
    assert any(f.startswith("sns: ") for f in error["notification_failures"])
    assert any("hooks.slack.com/<redacted>" in f for f in error["notification_failures"])
    assert_reset_restores(world)


def test_slack_http_500_is_reported_and_sns_still_goes_out(
    world: World, runtime: Runtime, output: Output, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runtime.effects.notifier, "_post", lambda url, body, timeout: 500)
    world.usage(batch("a", 12))
    assert world.flag().level == Level.ALERT
    assert len(world.sns_messages()) == 1
    assert output.metric("NotificationsFailed") == 1
    assert any("HTTP 500" in str(e) for e in output.log_lines("ERROR"))


@pytest.mark.parametrize("fault", ["missing", "access-denied", "not-a-url"])
def test_slack_secret_unavailable_still_enforces_and_alerts_by_sns(
    world: World, runtime: Runtime, faults: Faults, output: Output, monkeypatch: pytest.MonkeyPatch, fault: str
) -> None:
    sm = runtime.clients["secretsmanager"]
    if fault == "missing":
        sm.delete_secret(SecretId="slack-webhook", ForceDeleteWithoutRecovery=True)
    elif fault == "access-denied":
        faults.inject(sm, "GetSecretValue", "AccessDeniedException", times=100)
    else:
        sm.put_secret_value(SecretId="slack-webhook", SecretString="http://attacker.example/" + WEBHOOK[8:])
    world.usage(batch("a", 60))
    assert_counted_once(world, 60)
    assert_shut_down(world)
    assert world.slack == [] and len(world.sns_messages()) == 1
    assert output.metric("NotificationsFailed") == 1
    (error,) = [e for e in output.log_lines("ERROR") if e["message"] == "effects"]
    assert error["notification_failures"][0].startswith("slack: ")


# -- Lambda concurrency --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "status"),
    [("TooManyRequestsException", 429), ("AccessDeniedException", 403), ("ServiceException", 500)],
)
def test_put_function_concurrency_failing_is_alerted_and_repaired_by_schedule(
    world: World, runtime: Runtime, faults: Faults, output: Output, code: str, status: int
) -> None:
    faults.inject(runtime.clients["lambda"], "PutFunctionConcurrency", code, status=status, times=2)
    world.usage(batch("a", 60))
    flag = world.flag()
    assert flag.level == Level.SHUTDOWN and not flag.applied  # shutdown:partial, saved values kept
    assert flag.targets["chat-api"].saved == 7 and world.concurrency("chat-api") == 7
    assert output.metric("EffectsFailed") == 2
    assert code in world.slack[-1]["text"] and "FAILED" in world.slack[-1]["text"]  # on-call is told
    result = handlers.schedule.handler(SCHEDULED, world.ctx)
    assert result["repaired"] and output.metric("DriftRepaired") == 1
    assert_shut_down(world)
    assert_counted_once(world, 60)
    assert_reset_restores(world)


def test_reconciliation_denied_is_reported_and_the_schedule_run_still_repairs(
    world: World, runtime: Runtime, faults: Faults, output: Output
) -> None:
    # Given a shutdown whose concurrency change failed, and a role that may not list metrics
    runtime.clients["cloudwatch"] = boto3.client("cloudwatch", region_name="us-east-1")
    faults.inject(runtime.clients["lambda"], "PutFunctionConcurrency", "TooManyRequestsException", status=429)
    world.usage(batch("a", 60))
    faults.inject(runtime.clients["cloudwatch"], "ListMetrics", "AccessDenied", status=403, message="not authorized")
    # When the schedule runs
    result = handlers.schedule.handler(SCHEDULED, world.ctx)
    # Then it returns (no retry, no failure queue), the repair is done and the failure is reported
    assert result["repaired"]
    assert_shut_down(world)
    assert result["reconciliation"] == {"error": "AccessDenied: not authorized"}
    assert any("reconciliation" in f and "AccessDenied" in f for f in result["failures"])
    assert any("AccessDenied" in str(line) for line in output.log_lines("ERROR"))


def test_get_function_concurrency_failing_skips_the_target_and_schedule_saves_and_stops_it(
    world: World, runtime: Runtime, faults: Faults, output: Output
) -> None:
    faults.inject(
        runtime.clients["lambda"],
        "GetFunctionConcurrency",
        "TooManyRequestsException",
        status=429,
        times=1,
        when=lambda _: True,
    )
    world.usage(batch("a", 60))
    flag = world.flag()
    assert flag.level == Level.SHUTDOWN and output.metric("EffectsFailed") == 1
    # Which target was unreadable depends on order; it was neither saved nor touched.
    unread = {"chat-api", "worker"} - set(flag.targets)
    assert len(unread) == 1
    handlers.schedule.handler(SCHEDULED, world.ctx)
    assert_shut_down(world)
    assert_reset_restores(world)


def test_restore_throttled_keeps_saved_value_and_schedule_finishes_it(
    world: World, runtime: Runtime, faults: Faults, output: Output
) -> None:
    world.usage(batch("a", 60))
    assert_shut_down(world)
    faults.inject(runtime.clients["lambda"], "DeleteFunctionConcurrency", "TooManyRequestsException", status=429)
    result = handlers.reset.handler({"scope": "global", "reason": "drill", "actor": "alice"}, world.ctx)
    assert not result["ok"] and any("worker" in f and "TooManyRequests" in f for f in result["failures"])
    flag = world.flag()
    assert flag.level == Level.NORMAL and flag.targets["worker"].status == "restore_failed"
    assert world.concurrency("worker") == 0 and world.concurrency("chat-api") == 7
    handlers.schedule.handler(SCHEDULED, world.ctx)
    assert world.concurrency("worker") is None and world.flag().targets == {}


# -- crashes between the steps of a transition ------------------------------------------------------

# Shutdown: (1) flag transition committed, (2) saved concurrency written to the flag, (3) 0 per target,
# (4) flag marked applied, (5) notification.


def crash_in(
    monkeypatch: pytest.MonkeyPatch, owner: Any, name: str, when: Callable[..., bool] = lambda *a, **k: True
) -> None:
    real = getattr(owner, name)

    def crashing(*args: Any, **kwargs: Any) -> Any:
        if when(*args, **kwargs):
            raise LambdaCrash(f"process died in {name}")
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, crashing)


def crash_after_first_zero(world: World, runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    client = runtime.clients["lambda"]
    real = client.put_function_concurrency
    done: list[str] = []

    def put(**kwargs: Any) -> Any:
        if done:
            raise LambdaCrash("process died between two targets")
        done.append(kwargs["FunctionName"])
        return real(**kwargs)

    monkeypatch.setattr(client, "put_function_concurrency", put)


SHUTDOWN_CRASHES: dict[str, Callable[[World, Runtime, pytest.MonkeyPatch], None]] = {
    "0-1 ledger committed, flag transition not": lambda w, rt, m: crash_in(m, FlagStore, "transition"),
    "1-2 flag committed, concurrency not saved": lambda w, rt, m: crash_in(m, Effects, "shutdown"),
    "2-3 saved, no target at 0": lambda w, rt, m: crash_in(m, Effects, "enforce_zero"),
    "3 one target at 0, the other not": crash_after_first_zero,
    "3-4 targets at 0, flag not marked applied": lambda w, rt, m: crash_in(
        m, FlagStore, "update", lambda self, before, **kw: kw.get("action") == "shutdown:applied"
    ),
    "4-5 applied, not notified": lambda w, rt, m: crash_in(m, Notifier, "send"),
}


@pytest.mark.parametrize("step", list(SHUTDOWN_CRASHES))
def test_crash_at_each_shutdown_step_is_repaired_without_double_counting(
    world: World, runtime: Runtime, output: Output, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    event = batch("a", 60)
    with monkeypatch.context() as m:
        SHUTDOWN_CRASHES[step](world, runtime, m)
        with pytest.raises(LambdaCrash):
            world.usage(event)
    assert_counted_once(world, 60)
    # A new container (the crash killed the old one) gets the Lambda retry of the same event ...
    default_runtime.cache_clear()
    retry = world.usage(event)
    assert retry["recorded"] == 0 and retry["duplicates"] == 60
    # ... and the next schedule run finishes whatever is left.
    report = handlers.schedule.handler(SCHEDULED, world.ctx)
    assert not report["failures"]
    assert_counted_once(world, 60)
    assert_shut_down(world)
    shutdown_news = [m for m in world.sns_messages() if "SHUTDOWN" in m or "shutdown" in m]
    assert len(shutdown_news) >= 1  # on-call hears about the shutdown at least once
    assert_reset_restores(world)


# Restore: (1) reset transition committed, (2) concurrency restored per target, (3) flag's targets
# cleared, (4) notification.

RESTORE_CRASHES: dict[str, Callable[[World, Runtime, pytest.MonkeyPatch], None]] = {
    "1-2 reset committed, nothing restored": lambda w, rt, m: crash_in(m, Effects, "restore"),
    "2 one target restored, the other not": lambda w, rt, m: crash_in(
        m, rt.clients["lambda"], "delete_function_concurrency"
    ),
    "2-3 restored, flag still lists targets": lambda w, rt, m: crash_in(
        m, FlagStore, "update", lambda self, before, **kw: str(kw.get("action", "")).startswith("restore:")
    ),
    "3-4 restored, not notified": lambda w, rt, m: crash_in(m, Notifier, "send"),
}


@pytest.mark.parametrize("step", list(RESTORE_CRASHES))
def test_crash_at_each_restore_step_is_finished_by_schedule_or_a_second_reset(
    world: World, runtime: Runtime, output: Output, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    world.usage(batch("a", 60))
    assert_shut_down(world)
    reset = {"scope": "global", "reason": "loop fixed", "actor": "alice"}
    with monkeypatch.context() as m:
        RESTORE_CRASHES[step](world, runtime, m)
        with pytest.raises(LambdaCrash):  # the on-call's CLI/invoke shows the error at once
            handlers.reset.handler(reset, world.ctx)
    assert world.flag().level == Level.NORMAL  # guarded clients may call again
    default_runtime.cache_clear()
    handlers.schedule.handler(SCHEDULED, world.ctx)
    assert world.concurrency("chat-api") == 7 and world.concurrency("worker") is None
    flag = world.flag()
    assert flag.level == Level.NORMAL and flag.targets == {}
    # Spend in the same window does not re-shut everything: the reset's re-arm baseline held.
    assert world.usage(batch("b", 2))["transitions"] == []
    requests, spend = ledger_totals(world)
    assert requests == 62 and spend == RECORD_USD * 62
    # The audit trail records the reset exactly once (a direct invoke: unverified actor, the claim a note).
    history = FlagStore(boto3.client("dynamodb", region_name="us-east-1"), TABLE).history("global")
    resets = [e for e in history if e.action.endswith("->normal")]
    assert [e.actor for e in resets] == ["unverified:direct-invoke"] and "claimed actor alice" in resets[0].reason
