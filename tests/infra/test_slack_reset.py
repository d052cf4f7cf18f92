"""Reset from Slack in the template (issue 18, part 2): the function URL (auth NONE: Slack signs), the app
secret, and IAM scoped to the reset function's permissions plus reading that secret."""

from __future__ import annotations

from typing import Any

from tests.support.synth import (
    PREFIX,
    SLACK_APP_SECRET_ARN,
    Synth,
    actions,
    as_list,
    resolve,
    statements_by_function,
)

SLACK_FN = f"{PREFIX}-slack"


def slack_url(synth: Synth) -> dict[str, Any]:
    (url,) = [
        u["Properties"] for u in synth.of_type("AWS::Lambda::Url").values() if u["Properties"]["AuthType"] == "NONE"
    ]
    return url


def function_props(synth: Synth, name: str) -> tuple[str, dict[str, Any]]:
    return next(
        (k, v["Properties"])
        for k, v in synth.of_type("AWS::Lambda::Function").items()
        if v["Properties"]["FunctionName"] == name
    )


def test_the_slack_function_url_is_public_for_slack_to_sign_and_is_an_output(synth: Synth) -> None:
    url = slack_url(synth)
    logical_id, props = function_props(synth, SLACK_FN)
    assert url["TargetFunctionArn"] == {"Fn::GetAtt": [logical_id, "Arn"]}
    assert props["Handler"] == "handlers.slack.handler"
    (grant,) = [
        p["Properties"]
        for p in synth.of_type("AWS::Lambda::Permission").values()
        if p["Properties"].get("FunctionUrlAuthType") == "NONE"
    ]
    assert (grant["Action"], grant["Principal"]) == ("lambda:InvokeFunctionUrl", "*")
    outputs = synth.template["Outputs"]
    (url_id,) = [k for k, v in synth.of_type("AWS::Lambda::Url").items() if v["Properties"]["AuthType"] == "NONE"]
    assert outputs["SlackRequestUrl"]["Value"] == {"Fn::GetAtt": [url_id, "FunctionUrl"]}


def test_the_slack_function_reads_the_app_secret_and_the_allowlist(synth: Synth) -> None:
    _, props = function_props(synth, SLACK_FN)
    env = props["Environment"]["Variables"]
    assert env["GUARDRAIL_SLACK_APP_SECRET_ARN"] == SLACK_APP_SECRET_ARN
    assert env["GUARDRAIL_SLACK_ONCALL_USERS"] == "U0ONCALL,T0123ABCD/U0BOB"
    # Alerts carry the buttons in every function that may page; the secret stays with the Slack function.
    for name in (f"{PREFIX}-usage", f"{PREFIX}-alarm", f"{PREFIX}-schedule", f"{PREFIX}-reset"):
        other = function_props(synth, name)[1]["Environment"]["Variables"]
        assert other["GUARDRAIL_SLACK_BUTTONS"] == "true" and "GUARDRAIL_SLACK_APP_SECRET_ARN" not in other


def _shape(statements: list[dict[str, Any]]) -> list[tuple[tuple[str, ...], str]]:
    """Statements as (actions, resources), the function's own log group and failure queue left out (each
    function has its own)."""
    out = []
    for st in statements:
        if any(a.startswith(("logs:", "sqs:")) for a in actions(st)):
            continue
        assert st["Effect"] == "Allow" and "Condition" not in st
        out.append((tuple(sorted(actions(st))), repr(sorted(map(repr, resolve(as_list(st["Resource"])))))))
    return sorted(out)


def test_the_slack_function_may_do_what_the_reset_function_does_plus_read_its_secret(synth: Synth) -> None:
    by_function = statements_by_function(synth)
    slack, reset = by_function[SLACK_FN], by_function[f"{PREFIX}-reset"]
    secret = [st for st in slack if actions(st) == {"secretsmanager:GetSecretValue"}]
    assert [resolve(st["Resource"]) for st in secret] == [SLACK_APP_SECRET_ARN]
    assert _shape([st for st in slack if st not in secret]) == _shape(reset)


def test_the_slack_function_has_its_failure_queue_and_alarms(synth: Synth) -> None:
    names = {a["Properties"]["AlarmName"] for a in synth.of_type("AWS::CloudWatch::Alarm").values()}
    assert {f"{PREFIX}-slack-errors", f"{PREFIX}-slack-failure-queue"} <= names
