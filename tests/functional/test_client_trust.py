"""The guarded client as a reporter (issue 13): it names itself with its verified AWS identity (item 4) and
loses no report at process exit (item 10)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3

from guardrail.client import ClientOptions, guard
from guardrail.core.config import load_settings
from tests.support.bedrock import SONNET, Bedrock, call, expected_request, parse_usage, response
from tests.support.common import TABLE

ROOT = Path(__file__).resolve().parents[2]
MOTO_ARN = "arn:aws:sts::123456789012:user/moto"  # what moto's GetCallerIdentity answers


# -- item 4: who reports ----------------------------------------------------------------------------------


def test_guard_reports_its_own_aws_identity_resolved_once(
    ddb: Any, bedrock: Bedrock, usage_events: Callable[[], list[dict[str, Any]]]
) -> None:
    lookups: list[int] = []

    def sts() -> Any:
        lookups.append(1)
        return boto3.client("sts", region_name="us-east-1")

    client = guard(
        bedrock.client,
        metadata={"app": "chat-api"},
        settings=load_settings(table_name=TABLE),
        options=ClientOptions(background=False),
        dynamodb=ddb,
        events=boto3.client("events", region_name="us-east-1"),
        sts=sts,
    )
    for rid in ("req-1", "req-2", "req-3"):
        bedrock.respond("converse", response("converse", rid), expected_request("converse", SONNET))
        call(client, "converse")
    records = parse_usage(usage_events())
    assert [r.caller for r in records] == [MOTO_ARN] * 3
    assert lookups == [1]


def test_a_given_caller_is_reported_and_sts_is_never_asked(
    ddb: Any, bedrock: Bedrock, usage_events: Callable[[], list[dict[str, Any]]]
) -> None:
    def sts() -> Any:
        raise AssertionError("STS asked although the caller was given")

    client = guard(
        bedrock.client,
        caller="arn:aws:sts::123456789012:assumed-role/app/worker",
        settings=load_settings(table_name=TABLE),
        options=ClientOptions(background=False),
        dynamodb=ddb,
        events=boto3.client("events", region_name="us-east-1"),
        sts=sts,
    )
    bedrock.respond("converse", response("converse", "req-1"), expected_request("converse", SONNET, app=None))
    call(client, "converse")
    (record,) = parse_usage(usage_events())
    assert record.caller == "arn:aws:sts::123456789012:assumed-role/app/worker"


# -- item 10: reports at exit -----------------------------------------------------------------------------

EXIT_SCRIPT = textwrap.dedent(
    """
    import atexit, json, sys, time
    from moto import mock_aws
    mock_aws().start()
    import boto3
    from botocore.stub import Stubber
    from guardrail.client import ClientOptions, guard
    from guardrail.core.config import load_settings
    from guardrail.store.table import create_table
    from tests.support.bedrock import SONNET, Bedrock, expected_request, request, response
    from tests.support.usage_events import event_details

    delay, flush = float(sys.argv[1]), float(sys.argv[2])
    sqs = boto3.client("sqs", region_name="us-east-1")
    events = boto3.client("events", region_name="us-east-1")
    url = sqs.create_queue(QueueName="usage")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    bus = events.create_event_bus(Name="bedrock-guardrail-usage")["EventBusArn"]
    events.put_rule(Name="usage", EventBusName=bus, EventPattern=json.dumps({"detail-type": ["Bedrock Usage Rows"]}))
    events.put_targets(Rule="usage", EventBusName=bus, Targets=[{"Id": "q", "Arn": arn}])

    def received():  # registered before the client: runs after its exit hook
        msgs = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        details = [d for m in msgs for d in event_details(json.loads(m["Body"]))]
        print(json.dumps(sorted((d["requestId"], d.get("partial", False), d["outputTokens"]) for d in details)))

    atexit.register(received)

    class SlowEvents:
        def put_events(self, **kwargs):
            time.sleep(delay)
            return events.put_events(**kwargs)

    ddb = boto3.client("dynamodb", region_name="us-east-1")
    create_table(ddb, "t")
    bedrock = boto3.client("bedrock-runtime", region_name="us-east-1")
    stubbed = Bedrock(bedrock, Stubber(bedrock).__enter__())
    for rid in ("req-never-read", "req-read-halfway"):
        expected = expected_request("converse_stream", SONNET)
        stubbed.respond("converse_stream", response("converse_stream", rid), expected)
    client = guard(
        bedrock, metadata={"app": "chat-api"}, caller="arn:test", settings=load_settings(table_name="t"),
        options=ClientOptions(exit_flush_seconds=flush), dynamodb=ddb, events=SlowEvents(),
    )
    never = client.converse_stream(**request("converse_stream", SONNET))  # the process's first call
    half = client.converse_stream(**request("converse_stream", SONNET))
    events_iter = iter(half["stream"])
    for _ in range(3):  # messageStart, contentBlockStart, one delta: then the program ends
        next(events_iter)
    """
)


def run_exit_script(delay: float, flush: float) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-c", EXIT_SCRIPT, str(delay), str(flush)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_streams_open_at_exit_are_reported_partial_even_when_puts_are_slow() -> None:
    done = run_exit_script(delay=2.5, flush=8.0)  # slower than the old fixed 2 s exit flush
    assert done.returncode == 0, done.stderr
    reported = json.loads(done.stdout.strip().splitlines()[-1])
    assert [(rid, partial) for rid, partial, _ in reported] == [("req-never-read", True), ("req-read-halfway", True)]
    assert dict((rid, out) for rid, _, out in reported)["req-read-halfway"] >= 1


def test_what_cannot_be_sent_at_exit_is_logged_with_its_request_ids() -> None:
    done = run_exit_script(delay=60.0, flush=1.0)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
    assert "2 usage reports not sent at exit (request ids req-never-read, req-read-halfway)" in done.stderr


# -- item 3: where reports go -------------------------------------------------------------------------------


class CapturingEvents:
    def __init__(self) -> None:
        self.buses: list[str] = []

    def put_events(self, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        self.buses += [e["EventBusName"] for e in Entries]
        return {"FailedEntryCount": 0, "Entries": [{"EventId": "1"} for _ in Entries]}


def test_usage_events_go_to_the_bus_named_in_settings_or_options(ddb: Any, bedrock: Bedrock) -> None:
    for options, expected in (
        (ClientOptions(background=False), "acme-guardrail-usage"),
        (
            ClientOptions(background=False, event_bus="other-bus"),
            "other-bus",
        ),
    ):
        events = CapturingEvents()
        client = guard(
            bedrock.client,
            caller="arn:test",
            settings=load_settings(table_name=TABLE, usage_event_bus="acme-guardrail-usage"),
            options=options,
            dynamodb=ddb,
            events=events,  # type: ignore[arg-type]
        )
        bedrock.respond(
            "converse", response("converse", f"req-{expected}"), expected_request("converse", SONNET, app=None)
        )
        call(client, "converse")
        assert events.buses == [expected]
