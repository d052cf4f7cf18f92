"""The runtime's own clients in Lambda load botocore's models without its scan of every service: the same
models, the same errors, and a client that works through botocore's whole pipeline."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import DataNotFoundError, UnknownServiceError
from botocore.loaders import Loader, create_loader

from guardrail.core.config import load_settings
from guardrail.service.runtime import build
from guardrail.store import aws_models
from guardrail.store.aws_models import NamedServiceLoader
from guardrail.store.aws_models import create_loader as quick_loader

TYPES = ("service-2", "endpoint-rule-set-1", "paginators-1")


@pytest.mark.parametrize("service", ["dynamodb", "sns", "secretsmanager", "lambda", "iam", "bedrock", "cloudwatch"])
def test_every_model_the_runtime_loads_is_botocores(service: str) -> None:
    ours, theirs = quick_loader(), create_loader()
    for type_name in TYPES:
        assert ours.load_service_model(service, type_name) == theirs.load_service_model(service, type_name)
    assert ours.load_data("endpoints") == theirs.load_data("endpoints")
    version = theirs.determine_latest_version(service, "service-2")
    assert ours.load_service_model(service, "service-2", version) == theirs.load_service_model(
        service, "service-2", version
    )


def test_an_unknown_service_or_model_fails_as_in_botocore() -> None:
    loader = quick_loader()
    with pytest.raises(UnknownServiceError):
        loader.load_service_model("no-such-service", "service-2")
    with pytest.raises(UnknownServiceError):  # dynamodb has no such model type: botocore's error too
        loader.load_service_model("dynamodb", "no-such-type-1")
    with pytest.raises(DataNotFoundError):
        loader.load_service_model("dynamodb", "service-2", api_version="1999-01-01")


def test_the_data_path_setting_still_adds_search_paths(tmp_path: Any) -> None:
    model_dir = tmp_path / "guardrail-custom" / "2020-01-01"
    model_dir.mkdir(parents=True)
    (model_dir / "service-2.json").write_text('{"version": "2.0", "metadata": {"apiVersion": "2020-01-01"}}')
    loader = quick_loader(f"/nonexistent:{tmp_path}")
    assert loader.load_service_model("guardrail-custom", "service-2")["metadata"] == {"apiVersion": "2020-01-01"}


class _Body:
    def stream(self, **_: Any) -> Any:
        yield b'{"Item": {"pk": {"S": "a"}}}'


def test_in_lambda_the_runtimes_clients_come_from_the_quick_loader(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "guardrail-usage")
    runtime = build(load_settings(table_name="t"))
    ddb = runtime.client("dynamodb")
    assert isinstance(runtime.session._session.get_component("data_loader"), NamedServiceLoader)
    assert runtime.client("sns").meta.service_model.service_name == "sns"
    sent: list[Any] = []

    def answer(request: Any, **_: Any) -> AWSResponse:
        sent.append(request)
        return AWSResponse(request.url, 200, {"Content-Type": "application/x-amz-json-1.0"}, _Body())

    ddb.meta.events.register("before-send.dynamodb.*", answer)
    assert ddb.get_item(TableName="t", Key={"pk": {"S": "a"}})["Item"] == {"pk": {"S": "a"}}
    assert sent[0].url == "https://dynamodb.us-east-1.amazonaws.com/"
    assert sent[0].headers["X-Amz-Target"] == b"DynamoDB_20120810.GetItem"


def test_outside_lambda_the_runtime_uses_boto3s_default_session(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_NAME", raising=False)
    runtime = build(load_settings(table_name="t"))
    assert runtime.session is None
    assert not isinstance(runtime.client("sns")._loader, NamedServiceLoader)


def test_a_botocore_without_what_the_loader_builds_on_gets_botocores_own_loader(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(aws_models, "_LOADER_HELPERS", (*aws_models._LOADER_HELPERS, "_a_helper_botocore_dropped"))
    loader = quick_loader()
    assert type(loader) is Loader
    assert loader.load_service_model("dynamodb", "service-2")["metadata"]["serviceId"] == "DynamoDB"
