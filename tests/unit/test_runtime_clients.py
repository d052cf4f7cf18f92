"""The runtime's DynamoDB client validates requests everywhere but in Lambda, where our own fixed request
shapes were validated by the test suite and validating again was most of the usage function's CPU."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ParamValidationError

from guardrail.core.config import load_settings
from guardrail.service.runtime import build


class _Body:
    def stream(self, **_: Any) -> Any:
        yield b"{}"


def _answer(request: Any, **_: Any) -> AWSResponse:
    return AWSResponse(request.url, 200, {"Content-Type": "application/x-amz-json-1.0"}, _Body())


@pytest.mark.parametrize("in_lambda", [False, True])
def test_dynamodb_requests_are_validated_locally_except_in_lambda(
    in_lambda: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if in_lambda:
        monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "guardrail-usage")
    else:
        monkeypatch.delenv("AWS_LAMBDA_FUNCTION_NAME", raising=False)
    ddb = build(load_settings(table_name="t")).client("dynamodb")
    ddb.meta.events.register("before-send.dynamodb.*", _answer)  # no network: DynamoDB "accepts" anything
    if in_lambda:
        ddb.get_item(
            TableName="t", Key={"pk": {"S": "a"}}, ConsistentRead="yes"
        )  # sent as built: DynamoDB would be the one to refuse it
    else:
        with pytest.raises(ParamValidationError):
            ddb.get_item(TableName="t", Key={"pk": {"S": "a"}}, ConsistentRead="yes")
