"""Running code under a synthesized function's identity policy, with moto's IAM enforcement on.

moto (5.x) evaluates the caller's identity policies per request, but only by action: it hands Resource
`"*"` to the evaluation for every service the guardrail uses (so any statement naming an ARN would never
match), it knows nothing of DynamoDB transactions and batches being authorised per contained operation
and table, and SNS never asks KMS for the publisher's use of the topic key. `enforced_iam()` keeps moto's
own machinery (access key -> assumed role -> its policies, Allow/Deny evaluation with wildcards) and
feeds it the (action, resource ARN) pairs AWS evaluates for each request, computed by `authorizations()`.

Not evaluated here, asserted on the template instead (tests/infra): condition keys, resource policies
(the topic policy, the key policy), SigV4 signatures (moto miscomputes them for REST paths; not what this
checks), and X-Ray/CloudWatch Logs writes, which the runtime does not make through the SDK.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from urllib.parse import unquote

from moto.core import enable_iam_authentication
from moto.core.exceptions import JsonRESTError
from moto.iam.access_control import IAMRequest

from tests.support.synth import ACCOUNT, PARTITION, REGION, Synth, resolve

Pair = tuple[str, str]
# Query-protocol services answer with moto's XML AccessDenied; the others expect a JSON error body.
_XML_SERVICES = {"sns", "sts", "iam", "sqs"}
_SIGNING_NAMES = {"monitoring": "cloudwatch"}  # credential scope -> IAM action prefix
_TRANSACT = {"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem", "ConditionCheck": "ConditionCheckItem"}


# -- the template, made concrete ------------------------------------------------------------------


def materialize(value: Any, physical: Mapping[str, Mapping[str, str]], literals: Mapping[str, str]) -> Any:
    """Resolve Ref / Fn::GetAtt to the moto resources standing in for the template's, pseudo parameters
    to the test account; `literals` replaces fixed strings (e.g. a secret ARN moto gives another suffix).
    An unknown reference becomes an ARN of no real service, so a statement on it matches nothing."""
    if isinstance(value, list):
        return [materialize(v, physical, literals) for v in value]
    if isinstance(value, str):
        return literals.get(value, value)
    if isinstance(value, dict) and len(value) == 1:
        ((key, arg),) = value.items()
        if key == "Ref" and isinstance(arg, str) and not arg.startswith("AWS::"):
            return physical.get(arg, {}).get("Ref", _unresolved(arg))
        if key == "Fn::GetAtt":
            return physical.get(arg[0], {}).get(arg[1], _unresolved(f"{arg[0]}.{arg[1]}"))
        if key == "Fn::Join":
            parts = [materialize(v, physical, literals) for v in arg[1]]
            return arg[0].join(str(resolve(p)) for p in parts)
        resolved = resolve(value)
        if resolved is not value:
            return resolved
    if isinstance(value, dict):
        return {k: materialize(v, physical, literals) for k, v in value.items()}
    return value


def remove_action(statements: list[dict[str, Any]], action: str) -> list[dict[str, Any]]:
    """The statements with one action taken out (a statement left with none is dropped)."""
    out = []
    for st in statements:
        kept = [a for a in ([st["Action"]] if isinstance(st["Action"], str) else st["Action"]) if a != action]
        if kept:
            out.append({**st, "Action": kept})
    return out


def _unresolved(name: str) -> str:
    return f"arn:{PARTITION}:unresolved:{REGION}:{ACCOUNT}:{name}"


def function_statements(synth: Synth, function_name: str) -> list[dict[str, Any]]:
    """Every statement of every policy attached to the function's role, as the template has them."""
    (fn,) = [
        f for f in synth.of_type("AWS::Lambda::Function").values() if f["Properties"]["FunctionName"] == function_name
    ]
    role = fn["Properties"]["Role"]["Fn::GetAtt"][0]
    statements: list[dict[str, Any]] = []
    for policy in synth.of_type("AWS::IAM::Policy").values():
        if {"Ref": role} in policy["Properties"]["Roles"]:
            statements.extend(policy["Properties"]["PolicyDocument"]["Statement"])
    return statements


def managed_policy_statements(synth: Synth, description_contains: str) -> list[dict[str, Any]]:
    """The statements of the one managed policy whose description contains the text."""
    (policy,) = [
        p
        for p in synth.of_type("AWS::IAM::ManagedPolicy").values()
        if description_contains in p["Properties"].get("Description", "")
    ]
    statements: list[dict[str, Any]] = policy["Properties"]["PolicyDocument"]["Statement"]
    return statements


def function_environment(
    synth: Synth, function_name: str, physical: Mapping[str, Mapping[str, str]], literals: Mapping[str, str]
) -> dict[str, str]:
    (fn,) = [
        f for f in synth.of_type("AWS::Lambda::Function").values() if f["Properties"]["FunctionName"] == function_name
    ]
    variables = fn["Properties"]["Environment"]["Variables"]
    return {k: str(materialize(v, physical, literals)) for k, v in variables.items()}


def assume_function_role(iam: Any, sts: Any, name: str, statements: list[dict[str, Any]]) -> dict[str, str]:
    """A role holding exactly `statements` (one inline policy), assumed the way Lambda assumes it:
    the returned credentials are those of the function's session."""
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ],
    }
    role = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    iam.put_role_policy(
        RoleName=name,
        PolicyName="FromTemplate",
        PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": statements}),
    )
    creds = sts.assume_role(RoleArn=role, RoleSessionName=name)["Credentials"]
    return {
        "AWS_ACCESS_KEY_ID": creds["AccessKeyId"],
        "AWS_SECRET_ACCESS_KEY": creds["SecretAccessKey"],
        "AWS_SESSION_TOKEN": creds["SessionToken"],
    }


# -- what AWS authorises per request --------------------------------------------------------------


def _arn(service: str, resource: str, region: str = REGION) -> str:
    return f"arn:{PARTITION}:{service}:{region}:{ACCOUNT}:{resource}"


def _table(name: str) -> str:
    return name if name.startswith("arn:") else _arn("dynamodb", f"table/{name}")


def authorizations(service: str, operation: str, path: str, body: bytes | str | None, data: Any) -> list[Pair]:
    """The (action, resource) pairs AWS checks for one request of the operations the guardrail makes."""
    action = f"{service}:{operation}"
    payload: dict[str, Any] = {}
    if body:
        try:
            payload = json.loads(body)
        except (ValueError, TypeError):
            payload = {}
    if service == "dynamodb":
        if operation == "TransactWriteItems":
            return [
                (f"dynamodb:{_TRANSACT[kind]}", _table(op["TableName"]))
                for item in payload["TransactItems"]
                for kind, op in item.items()
            ]
        if operation == "TransactGetItems":
            return [("dynamodb:GetItem", _table(i["Get"]["TableName"])) for i in payload["TransactItems"]]
        if operation in ("BatchGetItem", "BatchWriteItem"):
            return [(action, _table(t)) for t in payload["RequestItems"]]
        return [(action, _table(payload["TableName"]))]
    if service == "lambda" and "/functions/" in path:
        name = unquote(path.split("/functions/", 1)[1].split("/", 1)[0])
        return [(action, name if name.startswith("arn:") else _arn("lambda", f"function:{name}"))]
    if service == "sns" and operation == "Publish":
        topic = _param(data, "TopicArn")
        pairs = [(action, topic)]
        key = _topic_key(topic)
        if key:  # SNS uses the topic's key on the publisher's behalf (server-side encryption)
            pairs += [("kms:GenerateDataKey", key), ("kms:Decrypt", key)]
        return pairs
    if service == "kms" and "KeyId" in payload:
        key = payload["KeyId"]
        return [(action, key if key.startswith("arn:") else _arn("kms", f"key/{key}"))]
    if service == "secretsmanager" and "SecretId" in payload:
        return [(action, payload["SecretId"])]
    if service == "iam" and operation in ("GetRolePolicy", "PutRolePolicy", "DeleteRolePolicy"):
        return [(action, _role_arn(_param(data, "RoleName")))]  # the role, by its ARN (path included)
    if service == "bedrock" and "/inference-profiles/" in path:
        profile = unquote(path.split("/inference-profiles/", 1)[1])
        return [(action, profile if profile.startswith("arn:") else _arn("bedrock", f"inference-profile/{profile}"))]
    return [(action, "*")]  # APIs without resource-level permissions (CloudWatch metrics, ...)


def _param(data: Any, name: str) -> str:
    value = data.get(name) if isinstance(data, Mapping) else None
    return str(value[0] if isinstance(value, list) else value)


def _role_arn(name: str) -> str:
    from moto.iam.models import iam_backends

    try:
        return str(iam_backends[ACCOUNT][PARTITION].get_role(name).arn)
    except Exception:
        return f"arn:{PARTITION}:iam::{ACCOUNT}:role/{name}"


def _topic_key(topic_arn: str) -> str | None:
    from moto.kms.models import kms_backends
    from moto.sns.models import sns_backends

    try:
        key_id = sns_backends[ACCOUNT][REGION].get_topic(topic_arn).kms_master_key_id
    except Exception:
        return None
    if not key_id:
        return None
    return str(kms_backends[ACCOUNT][REGION].describe_key(key_id).arn)


@contextmanager
def enforced_iam(log: Callable[[str, str, bool], None] | None = None) -> Iterator[None]:
    """Every request inside is authorised against the caller's policies, per (action, resource) pair."""
    original = IAMRequest.check_action_permitted

    def check(self: IAMRequest, resource: str) -> None:
        service, operation = self._action.split(":", 1)
        service = _SIGNING_NAMES.get(service, service)
        for action, arn in authorizations(service, operation, self._path, self._body, self._data):
            self._action = action
            try:
                original(self, arn)
            except Exception as exc:
                if log:
                    log(action, arn, False)
                if service in _XML_SERVICES:
                    raise
                raise JsonRESTError(
                    "AccessDeniedException",
                    f"User: {self._access_key.arn} is not authorized to perform: {action} on resource: {arn}",
                ) from exc
            if log:
                log(action, arn, True)

    IAMRequest.check_action_permitted = check  # type: ignore[method-assign]
    IAMRequest.check_signature = lambda self: None  # type: ignore[method-assign]
    try:
        with enable_iam_authentication():
            yield
    finally:
        IAMRequest.check_action_permitted = original  # type: ignore[method-assign]
        del IAMRequest.check_signature
