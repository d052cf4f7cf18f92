"""The typed configuration of the CDK app, read from CDK context.

Context key `guardrail` holds an object (in `cdk.json`, or a JSON string on the command line); each field
can also be overridden on its own with `-c guardrail:<field>=<value>` (JSON if it parses, else text).
Field names are camelCase in context (`targetFunctions`) and snake_case in Python.

Validation happens at synth, before any resource exists: the environment the functions will read is
built here and validated with the guardrail's own settings model (`guardrail.core.config.load_settings`), so a
setting the functions would reject at cold start fails `cdk synth` instead, with the same message.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.alias_generators import to_camel

from guardrail.core.config import (
    ROLE_ARN,
    BudgetModel,
    Settings,
    ThresholdsModel,
    function_name,
    is_role,
    load_settings,
)
from guardrail.core.errors import ConfigError
from guardrail.core.models import Level

CONTEXT_KEY = "guardrail"
# Per-field keys that are not fields of the props model (read by application.py).
EXTRA_CONTEXT_KEYS = ("stackName",)

# The contract between the stack and the handlers (see docs/deploy.md, "Metrics").
METRICS_NAMESPACE = "BedrockGuardrail"
FUNCTION_ROLES = ("usage", "alarm", "reset", "schedule", "slack")  # slack: deployed only with `slackApp`
HANDLERS = {role: f"handlers.{role}.handler" for role in FUNCTION_ROLES}
USAGE_EVENT_SOURCE = "guardrail.client"
# One report per event (clients before issue 19, or `report_packing=1`), several packed (issue 19's clients),
# and several as rows (clients now): guardrail.core.usage_event.USAGE_DETAIL_TYPES.
USAGE_EVENT_DETAIL_TYPES = ("Bedrock Usage", "Bedrock Usage Batch", "Bedrock Usage Rows")

# Lambda limits the whole environment to 4 KB.
LAMBDA_ENV_LIMIT = 4096
# Lengths assumed for values only known at deploy time (table name, topic and secret ARNs).
_PLACEHOLDERS = {
    "GUARDRAIL_TABLE_NAME": "x" * 100,
    "GUARDRAIL_TOPIC_ARN": "arn:aws:sns:ap-southeast-2:123456789012:" + "x" * 80,
}

DEFAULT_INGEST_CONCURRENCY = 10

_FUNCTION_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_FUNCTION_ARN = re.compile(
    r"^arn:aws[a-z-]*:lambda:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):"
    r"function:(?P<name>[A-Za-z0-9_-]{1,64})(?P<qualifier>:[^:]+)?$"
)
_PRINCIPAL_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:(root|role/[\w+=,.@/-]+|user/[\w+=,.@/-]+)$")
_RETENTION_DAYS = {1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557}
_RETENTION_DAYS = _RETENTION_DAYS | {2922, 3288, 3653}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, alias_generator=to_camel, populate_by_name=True)


class InvocationLogs(_Model):
    """Where Bedrock model invocation logs arrive.

    `existing`: a log group that Bedrock invocation logging already writes to (`logGroupName` required).
    `create`: the stack creates the log group and turns invocation logging on with a custom resource; it
    refuses to replace an invocation logging configuration that already exists in the account and Region.
    """

    mode: Literal["existing", "create"] = "create"
    log_group_name: str | None = None
    retention_days: int = 30

    @model_validator(mode="after")
    def _check(self) -> InvocationLogs:
        if self.mode == "existing" and not self.log_group_name:
            raise ValueError("invocationLogs: mode 'existing' needs logGroupName (the log group Bedrock writes to)")
        if self.retention_days not in _RETENTION_DAYS:
            raise ValueError(f"invocationLogs.retentionDays: {self.retention_days} is not a CloudWatch Logs retention")
        return self


class SlackChannel(_Model):
    """Amazon Q Developer in chat applications (formerly AWS Chatbot): the workspace must be authorized in the
    console once before deploying."""

    workspace_id: str = Field(pattern=r"^[0-9A-Z]{1,255}$")
    channel_id: str = Field(pattern=r"^[A-Za-z0-9]{1,255}$")
    configuration_name: str | None = None


_SLACK_USER = re.compile(r"^(?:[TE][A-Z0-9]{2,30}/)?[UW][A-Z0-9]{2,30}$")


class SlackApp(_Model):
    """Reset from Slack: the Slack app whose interactivity Request URL is the stack's `SlackRequestUrl`."""

    # ARN (complete, with the 6-character suffix) or name of a secret holding
    # {"signing_secret": "...", "bot_token": "xoxb-..."}; created and filled by the platform team.
    secret: str = Field(min_length=1, max_length=2048)
    # Who may reset from Slack: user ids (U...), or team/user (T.../U...). Empty: nobody.
    oncall_users: tuple[str, ...] = ()

    @field_validator("oncall_users", mode="before")
    @classmethod
    def _users(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = tuple(p.strip() for p in value.split(",") if p.strip())
        for user in value:
            if not _SLACK_USER.match(str(user)):
                raise ValueError(f"{user!r} is not a Slack user id (U..., W...) or team/user (T.../U...)")
        return value


class GuardrailProps(_Model):
    name_prefix: str = Field(default="bedrock-guardrail", pattern=r"^[a-z][a-z0-9-]{0,39}$")
    mode: Literal["enforce", "dry-run"] = "enforce"
    thresholds: ThresholdsModel = ThresholdsModel()
    window: Literal["hour", "day", "month"] = "day"
    timezone: str = "UTC"
    budgets: tuple[BudgetModel, ...] | None = None
    target_functions: tuple[str, ...] = ()
    # IAM role ARNs (this account) of Bedrock callers that are not Lambda functions; shutdown denies them Bedrock.
    target_roles: tuple[str, ...] = ()
    alarm_levels: dict[str, str] = Field(default_factory=dict)
    model_downgrades: dict[str, str] | None = None
    price_overrides: dict[str, Any] | None = None
    slack_webhook_secret: str | None = None
    slack_channel: SlackChannel | None = None
    slack_app: SlackApp | None = None
    invocation_logs: InvocationLogs = InvocationLogs()
    schedule_minutes: int = Field(default=5, ge=1, le=60)
    log_retention_days: int = 30
    # Reserved so a runaway target cannot take the account's unreserved pool and delay metering; `null`
    # turns it off (accounts whose concurrency limit leaves nothing to reserve).
    ingest_reserved_concurrency: int | None = Field(default=DEFAULT_INGEST_CONCURRENCY, ge=1)
    table_name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]{3,255}$")
    bundle_dependencies: bool = True
    # Who may put usage events on the guardrail's bus (IAM role/user ARNs); none: the account root.
    usage_reporters: tuple[str, ...] = ()
    # Who is granted lambda:InvokeFunctionUrl on the reset URL (IAM role/user ARNs).
    resetters: tuple[str, ...] = ()

    @field_validator("usage_reporters", "resetters")
    @classmethod
    def _principals(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for arn in value:
            if not _PRINCIPAL_ARN.match(arn):
                raise ValueError(f"{arn!r} is not an IAM role, user or account root ARN")
        return value

    # -- field parsing ---------------------------------------------------------------------------

    @field_validator("thresholds", mode="before")
    @classmethod
    def _thresholds(cls, value: Any) -> Any:
        return ThresholdsModel.model_validate(value) if isinstance(value, str | dict) else value

    @field_validator("target_functions", "target_roles", mode="before")
    @classmethod
    def _csv(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(p.strip() for p in value.split(",") if p.strip())
        return value

    @field_validator("alarm_levels")
    @classmethod
    def _levels(cls, value: dict[str, str]) -> dict[str, str]:
        return {name: Level.parse(level).label for name, level in value.items()}

    @field_validator("log_retention_days")
    @classmethod
    def _retention(cls, value: int) -> int:
        if value not in _RETENTION_DAYS:
            raise ValueError(f"{value} is not a CloudWatch Logs retention (e.g. 7, 14, 30, 90, 365)")
        return value

    @model_validator(mode="after")
    def _not_ours(self) -> GuardrailProps:
        own = set(self.function_names.values())
        for role in self.all_roles:
            if not ROLE_ARN.match(role):
                raise ValueError(f"targetRoles: {role!r} is not an IAM role ARN (arn:aws:iam::<account>:role/<name>)")
        accounts = {role_account(r) for r in self.all_roles} | {a for a, _ in self._function_places}
        if self.all_roles and len(accounts) > 1:
            raise ValueError(
                f"targetRoles: role and function ARNs name more than one account ({', '.join(sorted(accounts))}); "
                "the guardrail denies roles only in the account it is deployed to"
            )
        places = self._function_places
        if len(places) > 1:
            listed = ", ".join(f"account {a} / Region {r}" for a, r in sorted(places))
            raise ValueError(
                f"targetFunctions: target ARNs name more than one place ({listed}); the guardrail stops "
                "functions only in the account and Region it is deployed to"
            )
        for target in self.all_functions:
            # Own functions first, in any form the runtime normalises (name, qualifier, partial or full ARN).
            if function_name(target) in own:
                raise ValueError(
                    f"targetFunctions: {target!r} is one of the guardrail's own functions "
                    f"({', '.join(sorted(own))}); stopping it would leave spend unmetered"
                )
            check_target(target)
        return self

    # -- derived values --------------------------------------------------------------------------

    @property
    def function_names(self) -> dict[str, str]:
        """Physical names of the four functions (fixed, so GUARDRAIL_OWN_FUNCTIONS needs no cross-reference)."""
        return {role: f"{self.name_prefix}-{role}" for role in FUNCTION_ROLES}

    @property
    def usage_bus_name(self) -> str:
        """The guardrail's own usage event bus (GUARDRAIL_USAGE_EVENT_BUS for clients)."""
        return f"{self.name_prefix}-usage"

    @property
    def service_name(self) -> str:
        """POWERTOOLS_SERVICE_NAME: the `service` dimension of every guardrail metric."""
        return self.name_prefix

    @property
    def all_targets(self) -> tuple[str, ...]:
        """Every target the guardrail may stop: the flat lists plus each budget's own targets."""
        out = dict.fromkeys((*self.target_functions, *self.target_roles))
        for budget in self.budgets or ():
            out.update(dict.fromkeys(budget.targets))
        return tuple(out)

    @property
    def all_functions(self) -> tuple[str, ...]:
        """Every function the guardrail may stop (reserved concurrency)."""
        return tuple(t for t in self.all_targets if not is_role(t))

    @property
    def all_roles(self) -> tuple[str, ...]:
        """Every role the guardrail may deny Bedrock (exact ARNs: the only roles its IAM may change)."""
        return tuple(t.strip() for t in self.all_targets if is_role(t))

    @property
    def _function_places(self) -> set[tuple[str, str]]:
        return {p for p in map(arn_account_region, self.all_functions) if p}

    @property
    def target_place(self) -> tuple[str, str] | None:
        """(account, Region) that function target ARNs name (all the same, checked above); None without ARNs."""
        return next((p for p in map(arn_account_region, self.all_functions) if p), None)

    @property
    def role_account(self) -> str | None:
        """The account that role target ARNs name (one, checked above); None without role targets."""
        return next((role_account(r) for r in self.all_roles), None)

    def function_environment(self, *, table_name: str, topic_arn: str, slack_secret_arn: str | None) -> dict[str, str]:
        """What every guardrail function reads (the `GUARDRAIL_*` contract of guardrail.core.config)."""
        t = self.thresholds
        env = {
            "GUARDRAIL_TABLE_NAME": table_name,
            "GUARDRAIL_TOPIC_ARN": topic_arn,
            "GUARDRAIL_TARGET_FUNCTIONS": ",".join(self.target_functions),
            "GUARDRAIL_TARGET_ROLES": ",".join(self.target_roles),
            "GUARDRAIL_OWN_FUNCTIONS": ",".join(self.function_names.values()),
            "GUARDRAIL_THRESHOLDS": f"alert={t.alert},throttle={t.throttle},shutdown={t.shutdown}",
            "GUARDRAIL_WINDOW": self.window,
            "GUARDRAIL_TIMEZONE": self.timezone,
            "GUARDRAIL_MODE": self.mode,
            "GUARDRAIL_ALARM_LEVELS": _json(self.alarm_levels),
            "POWERTOOLS_SERVICE_NAME": self.service_name,
            "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE,
        }
        if slack_secret_arn:
            env["GUARDRAIL_SLACK_SECRET_ARN"] = slack_secret_arn
            if self.slack_app:  # alerts carry Reset / Snooze 1 h only when something answers them
                env["GUARDRAIL_SLACK_BUTTONS"] = "true"
        if self.budgets:
            budgets = [{"scope": b.scope, **b.model_dump(mode="json", exclude_defaults=True)} for b in self.budgets]
            env["GUARDRAIL_BUDGETS"] = _json(budgets)
        if self.model_downgrades is not None:
            env["GUARDRAIL_MODEL_DOWNGRADES"] = _json(self.model_downgrades)
        if self.price_overrides:
            env["GUARDRAIL_PRICE_OVERRIDES"] = _json(self.price_overrides)
        return env

    def runtime_settings(self) -> Settings:
        """The settings the functions will load, validated now with deploy-time values as placeholders."""
        env = self.function_environment(
            table_name=_PLACEHOLDERS["GUARDRAIL_TABLE_NAME"],
            topic_arn=_PLACEHOLDERS["GUARDRAIL_TOPIC_ARN"],
            slack_secret_arn=self.slack_webhook_secret,
        )
        size = sum(len(k) + len(v) for k, v in env.items())
        if size > LAMBDA_ENV_LIMIT - 512:  # room for Lambda's and Powertools' own variables
            raise ConfigError(
                f"the function environment would be about {size} bytes; Lambda allows 4 KB in total. "
                "Shorten budgets / priceOverrides or move budgets to fewer, wildcard scopes."
            )
        with _environment(env):
            return load_settings()

    # -- loading ---------------------------------------------------------------------------------

    @classmethod
    def context_keys(cls) -> list[str]:
        """Every per-field context key (`guardrail:<field>`) the app reads."""
        aliases = [field.alias or name for name, field in cls.model_fields.items()]
        return sorted(f"{CONTEXT_KEY}:{a}" for a in (*aliases, *EXTRA_CONTEXT_KEYS))

    @classmethod
    def from_context(cls, get: Any, keys: Iterable[str] = ()) -> GuardrailProps:
        """`get` is `node.try_get_context`, `keys` every context key set (`node.get_all_context()`), so a
        misspelt `-c guardrail:<field>` fails instead of being ignored. Raises ConfigError naming the key."""
        known = cls.context_keys()
        for key in keys:
            if key.startswith(f"{CONTEXT_KEY}:") and key not in known:
                close = difflib.get_close_matches(key, known, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ConfigError(f"unknown context key {key!r}{hint}; known keys: {', '.join(known)}")
        raw = get(CONTEXT_KEY) or {}
        if isinstance(raw, str):
            raw = _loads(raw, CONTEXT_KEY)
        if not isinstance(raw, Mapping):
            raise ConfigError(f"context {CONTEXT_KEY!r}: expected an object, got {type(raw).__name__}")
        values = dict(raw)
        for name, field in cls.model_fields.items():
            alias = field.alias or name
            override = get(f"{CONTEXT_KEY}:{alias}")
            if override is not None:
                values[alias] = _parse_override(override)
        return cls.from_mapping(values)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> GuardrailProps:
        try:
            props = cls.model_validate(dict(values))
        except ValidationError as exc:
            lines = []
            for err in exc.errors():
                where = ".".join(str(p) for p in err["loc"]) or CONTEXT_KEY
                lines.append(f"{CONTEXT_KEY}.{where}: {err['msg'].removeprefix('Value error, ')}")
            raise ConfigError("invalid CDK context:\n  " + "\n  ".join(lines)) from None
        props.runtime_settings()  # fail at synth, not at the first cold start
        return props


def role_account(arn: str) -> str:
    m = ROLE_ARN.match(arn)
    return m.group("account") if m else ""


def arn_account_region(target: str) -> tuple[str, str] | None:
    """(account, Region) of a target given as an ARN; None for a plain function name."""
    m = _FUNCTION_ARN.match(target)
    return (m.group("account"), m.group("region")) if m else None


def check_target(target: str) -> None:
    """A target is a function name or an unqualified function ARN (concurrency is per function)."""
    if target.startswith("arn:"):
        m = _FUNCTION_ARN.match(target)
        if not m:
            raise ValueError(f"{target!r} is not a Lambda function ARN")
        if m.group("qualifier"):
            raise ValueError(f"{target!r}: reserved concurrency is set per function; drop the version/alias")
    elif not _FUNCTION_NAME.match(target):
        raise ValueError(f"{target!r} is not a Lambda function name (letters, digits, - and _; at most 64)")


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, default=_default)


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")


def _loads(text: str, key: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"context {key!r}: not valid JSON ({exc.msg})") from None


def _parse_override(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


@contextmanager
def _environment(env: Mapping[str, str]) -> Iterator[None]:
    """Set exactly `env` as the GUARDRAIL_* variables for the duration (settings read os.environ)."""
    saved = {k: v for k, v in os.environ.items() if k.startswith("GUARDRAIL_")}
    try:
        for key in saved:
            del os.environ[key]
        os.environ.update({k: v for k, v in env.items() if k.startswith("GUARDRAIL_")})
        yield
    finally:
        for key in [k for k in os.environ if k.startswith("GUARDRAIL_")]:
            del os.environ[key]
        os.environ.update(saved)
