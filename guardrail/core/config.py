"""Settings: one pydantic-settings model, read once from `GUARDRAIL_*` environment variables.

A bad value fails at start with a `ConfigError` naming the variable and the accepted form.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict, SettingsError

from guardrail.core.errors import ConfigError
from guardrail.core.models import Budget, Level, Thresholds

ENV_PREFIX = "GUARDRAIL_"

# The accepted form of each variable, quoted in errors.
ACCEPTED_FORMS: dict[str, str] = {
    "table_name": "a DynamoDB table name, e.g. bedrock-guardrail",
    "topic_arn": "an SNS topic ARN, e.g. arn:aws:sns:us-east-1:123456789012:guardrail",
    "target_functions": "comma-separated Lambda function names or ARNs, e.g. chat-api,worker",
    "target_roles": "comma-separated IAM role ARNs of this account, e.g. arn:aws:iam::123456789012:role/batch-jobs",
    "thresholds": "alert=5,throttle=10,shutdown=25 (USD, each level at least the one before)",
    "window": "one of hour, day, month",
    "timezone": "an IANA time zone, e.g. UTC or Europe/Berlin",
    "mode": "enforce or dry-run",
    "alarm_levels": 'a JSON object of alarm name -> level, e.g. {"bedrock-errors": "throttle"}',
    "budgets": 'a JSON list of budgets, e.g. [{"scope": "app:*", "window": "day", '
    '"thresholds": {"alert": 1, "throttle": 2, "shutdown": 5}}]',
    "price_overrides": 'a JSON object of model id -> USD per 1M tokens, e.g. {"my-model": {"input": 1, '
    '"output": 5, "cache_read": 0.1, "cache_write": 1.25}}',
    "ceiling_rate": "input=15,output=75,cache_read=1.5,cache_write=18.75 (USD per 1M tokens)",
    "own_functions": "comma-separated names of the guardrail's own Lambda functions",
    "request_ttl_days": "a whole number of days between 1 and 400",
    "max_tokens_per_request": "a positive whole number",
    "model_downgrades": 'a JSON object of model family -> cheaper family, e.g. {"claude-sonnet": "claude-haiku"}',
    "max_clock_skew_seconds": "a whole number of seconds, at least 0 (records stamped further ahead of now are "
    "quarantined)",
    "max_snooze_hours": "a number of hours above 0 and at most 744",
    "slack_secret_arn": "a Secrets Manager secret ARN or name holding the Slack webhook URL",
    "slack_app_secret_arn": 'a Secrets Manager secret ARN or name holding {"signing_secret": "...", '
    '"bot_token": "xoxb-..."} of the Slack app',
    "slack_oncall_users": "comma-separated Slack user ids (U...), or team/user (T.../U...), who may reset from Slack",
    "slack_buttons": "true or false (Reset and Snooze 1 h buttons in throttle and shutdown alerts)",
}


def _decimal(text: str, what: str) -> Decimal:
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        raise ValueError(f"{what}: {text!r} is not a number") from None
    if not value.is_finite() or value < 0:
        raise ValueError(f"{what}: {text!r} must be a non-negative number")
    return value


def parse_key_values(text: str) -> dict[str, Decimal]:
    out: dict[str, Decimal] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep:
            raise ValueError(f"{part!r} is not key=value")
        out[key.strip().lower()] = _decimal(value, key.strip())
    return out


def _split_csv(value: Any) -> Any:
    if isinstance(value, str):
        return tuple(p.strip() for p in value.split(",") if p.strip())
    return value


class ThresholdsModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    alert: Decimal = Decimal(5)
    throttle: Decimal = Decimal(10)
    shutdown: Decimal = Decimal(25)

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, value: Any) -> Any:
        if isinstance(value, str):
            return parse_key_values(value)
        if isinstance(value, dict):  # JSON numbers arrive as float: go through str to stay exact
            return {k: _decimal(str(v), k) for k, v in value.items()}
        return value

    @model_validator(mode="after")
    def _ordered(self) -> ThresholdsModel:
        if not (Decimal(0) < self.alert <= self.throttle <= self.shutdown):
            raise ValueError("thresholds must satisfy 0 < alert <= throttle <= shutdown")
        return self

    def to_domain(self) -> Thresholds:
        return Thresholds(alert=self.alert, throttle=self.throttle, shutdown=self.shutdown)


class TokenRates(BaseModel):
    """USD per 1M tokens, as Bedrock price lists state them."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    input: Decimal
    output: Decimal
    cache_read: Decimal | None = None
    cache_write: Decimal | None = None
    cache_write_1h: Decimal | None = None  # None: the (5-minute) cache_write rate

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, value: Any) -> Any:
        if isinstance(value, str):
            return parse_key_values(value)
        if isinstance(value, dict):
            return {k: None if v is None else _decimal(str(v), k) for k, v in value.items()}
        return value


class BudgetModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    scope: str = "global"
    window: Literal["hour", "day", "month"] | None = None
    thresholds: ThresholdsModel = ThresholdsModel()
    targets: tuple[str, ...] = ()
    model_downgrades: dict[str, str] | None = None
    shutdown_auto_clears: bool = False

    @field_validator("targets", mode="before")
    @classmethod
    def _targets(cls, value: Any) -> Any:
        return _split_csv(value)

    @field_validator("targets")
    @classmethod
    def _role_targets(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for target in value:
            if is_role(target):
                check_role_arn(target)
        return value

    @field_validator("scope")
    @classmethod
    def _scope(cls, value: str) -> str:
        value = value.strip()
        if value != "global":
            dim, sep, val = value.partition(":")
            if not sep or not dim or not val:
                raise ValueError(f"scope {value!r}: expected global, <key>:* or <key>:<value>")
        return value


DEFAULT_DOWNGRADES = {"claude-sonnet": "claude-haiku", "claude-3-5-sonnet": "claude-3-5-haiku"}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, extra="ignore")

    table_name: str = "bedrock-guardrail"
    topic_arn: str | None = None
    slack_secret_arn: str | None = None
    target_functions: Annotated[tuple[str, ...], NoDecode] = ()
    # IAM roles of callers that are not Lambda functions (ECS, EC2, EKS, notebooks): shutdown denies them Bedrock.
    target_roles: Annotated[tuple[str, ...], NoDecode] = ()
    own_functions: Annotated[tuple[str, ...], NoDecode] = ()
    thresholds: Annotated[ThresholdsModel, NoDecode] = ThresholdsModel()
    window: Literal["hour", "day", "month"] = "day"
    timezone: str = "UTC"
    mode: Literal["enforce", "dry-run"] = "enforce"
    alarm_levels: dict[str, Level] = Field(default_factory=dict)
    budgets: list[BudgetModel] | None = None
    model_downgrades: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_DOWNGRADES))
    price_overrides: dict[str, TokenRates] = Field(default_factory=dict)
    ceiling_rate: Annotated[TokenRates, NoDecode] = TokenRates(
        input=Decimal(15), output=Decimal(75), cache_read=Decimal("1.5"), cache_write=Decimal("18.75")
    )
    request_ttl_days: int = Field(default=8, ge=1, le=400)
    max_tokens_per_request: int = Field(default=5_000_000, gt=0)
    max_clock_skew_seconds: int = Field(default=300, ge=0)
    max_snooze_hours: Decimal = Field(default=Decimal(24), gt=0, le=744)
    # A client-reported request no invocation log confirmed within this time is shown as unconfirmed
    # spend (it still counts). 0: invocation logging is off, client reports are the only copy.
    unconfirmed_after_minutes: int = Field(default=15, ge=0, le=24 * 60)
    # The guardrail's own usage event bus (stack output UsageEventBus); guarded clients put usage events here.
    usage_event_bus: str = Field(default="bedrock-guardrail-usage", min_length=1, max_length=1600)
    # Reset from Slack (guardrail.service.slack_reset): the app's signing secret and bot token, who may reset
    # (empty: nobody), and whether alerts carry the buttons (only useful once the app's Request URL is set).
    slack_app_secret_arn: str | None = None
    slack_oncall_users: Annotated[tuple[str, ...], NoDecode] = ()
    slack_buttons: bool = False

    @field_validator("target_functions", "target_roles", "own_functions", "slack_oncall_users", mode="before")
    @classmethod
    def _csv(cls, value: Any) -> Any:
        return _split_csv(value)

    @field_validator("target_roles")
    @classmethod
    def _roles(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for arn in value:
            check_role_arn(arn)
        return value

    @field_validator("thresholds", mode="before")
    @classmethod
    def _thresholds(cls, value: Any) -> Any:
        return ThresholdsModel.model_validate(value) if isinstance(value, str) else value

    @field_validator("ceiling_rate", mode="before")
    @classmethod
    def _ceiling(cls, value: Any) -> Any:
        return TokenRates.model_validate(value) if isinstance(value, str) else value

    @field_validator("budgets", "price_overrides", "model_downgrades", mode="before")
    @classmethod
    def _json_text(cls, value: Any) -> Any:
        # Environment values are JSON-decoded by pydantic-settings; keyword overrides may be text too.
        return json.loads(value) if isinstance(value, str) else value

    @field_validator("alarm_levels", mode="before")
    @classmethod
    def _alarm_levels(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = json.loads(value)
        if isinstance(value, dict):
            return {str(k): Level.parse(v) for k, v in value.items()}
        return value

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @model_validator(mode="after")
    def _targets_not_ours(self) -> Settings:
        own = {function_name(f) for f in self.own_functions}
        named = [("GUARDRAIL_TARGET_FUNCTIONS", t) for t in self.target_functions]
        named += [("GUARDRAIL_BUDGETS", t) for b in self.budgets or () for t in b.targets]
        clash = [(var, t) for var, t in named if not is_role(t) and function_name(t) in own]
        if clash:
            var = clash[0][0]
            forms = ", ".join(repr(t) for v, t in clash if v == var)
            raise ValueError(
                f"{var}: {forms} name the guardrail's own functions (any form: name, qualifier, partial or full "
                "ARN, alias); stopping them would leave spend unmetered"
            )
        selectors = [b.selector for b in self.budget_list()]
        if len(selectors) != len(set(selectors)):
            raise ValueError("budgets: two budgets select the same scope; give each scope one budget")
        return self

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def dry_run(self) -> bool:
        return self.mode == "dry-run"

    def budget_list(self) -> list[Budget]:
        """The configured budgets; without GUARDRAIL_BUDGETS one global budget from the flat settings."""
        models = self.budgets or [BudgetModel(scope="global")]
        out = []
        for m in models:
            is_global = m.scope == "global"
            out.append(
                Budget(
                    selector=m.scope,
                    window=m.window or self.window,
                    thresholds=(m.thresholds if self.budgets else self.thresholds).to_domain(),
                    targets=m.targets or ((*self.target_functions, *self.target_roles) if is_global else ()),
                    model_downgrades=dict(
                        m.model_downgrades if m.model_downgrades is not None else self.model_downgrades
                    ),
                    shutdown_auto_clears=m.shutdown_auto_clears,
                )
            )
        return out


def function_name(target: str) -> str:
    """Every form Lambda takes for one function -> its name (the canonical form: reserved concurrency is
    per function, not per version or alias): `name`, `name:qualifier`, the partial ARN
    `123456789012:function:name[:qualifier]` and the ARN `arn:aws:lambda:region:account:function:name[:qualifier]`
    (an alias or version ARN is the qualified form)."""
    parts = target.strip().split(":")
    if parts[0] == "arn" and len(parts) >= 7 and parts[5] == "function":
        return parts[6]
    if len(parts) >= 3 and parts[1] == "function":
        return parts[2]
    return parts[0]


# An IAM role ARN (with its path): what a role target is named by, in settings and in IAM policies.
ROLE_ARN = re.compile(
    r"^arn:aws[a-z-]*:iam::(?P<account>\d{12}):role/(?P<path>(?:[\w+=,.@-]+/)*)(?P<name>[\w+=,.@-]{1,64})$"
)


def is_role(target: str) -> bool:
    """A target given as an IAM ARN is a role target; anything else names a Lambda function."""
    parts = target.strip().split(":")
    return len(parts) > 2 and parts[0] == "arn" and parts[2] == "iam"


def check_role_arn(target: str) -> None:
    if not ROLE_ARN.match(target.strip()):
        raise ValueError(
            f"{target!r} is not an IAM role ARN (arn:aws:iam::<12-digit account>:role/[<path>/]<name>); "
            "a role target is named by its full ARN"
        )


def role_name(arn: str) -> str:
    """The RoleName IAM's role-policy APIs take (the ARN without account and path)."""
    return arn.rsplit("/", 1)[-1]


def target_name(target: str) -> str:
    """The canonical name of a target, one per target item and hold: a role's ARN, or a function's name."""
    return target.strip() if is_role(target) else function_name(target)


# Read by the CDK app's bundling, not by Settings: known, so never warned about.
OTHER_VARIABLES = frozenset({"GUARDRAIL_CDK_CACHE"})


def unknown_variables(environ: Mapping[str, str]) -> list[tuple[str, str]]:
    """`GUARDRAIL_*` variables that are no setting (a typo is otherwise silently ignored), each with a hint."""
    import difflib  # the CLI's check only, never on a function's cold start

    known = {f"{ENV_PREFIX}{name.upper()}" for name in Settings.model_fields} | OTHER_VARIABLES
    out = []
    for name in sorted(environ):
        if name.upper().startswith(ENV_PREFIX) and name.upper() not in known:
            close = difflib.get_close_matches(name.upper(), sorted(known), n=1, cutoff=0.6)
            out.append((name, f"did you mean {close[0]}?" if close else "see README: Configuration"))
    return out


def load_settings(*, flag_names: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Read settings once; turn pydantic's errors into one message naming each variable (or, for a value
    given as an override, the command-line flag in `flag_names`)."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            field = str(err["loc"][0]) if err["loc"] else ""
            var = f"{ENV_PREFIX}{field.upper()}" if field else "GUARDRAIL settings"
            if field in overrides and flag_names and field in flag_names:
                var = flag_names[field]
            msg = err["msg"].removeprefix("Value error, ")
            form = ACCEPTED_FORMS.get(field)
            named = not field and msg.startswith(ENV_PREFIX)  # a whole-model check names its own variable
            lines.append(("" if named else f"{var}: ") + msg + (f" (accepted form: {form})" if form else ""))
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines)) from None
    except SettingsError as exc:  # a complex value (JSON) that did not even decode
        found = re.search(r'field "([a-z_]+)"', str(exc))
        name = found.group(1) if found else ""
        var = f"{ENV_PREFIX}{name.upper()}" if name else "a GUARDRAIL_ setting"
        form = ACCEPTED_FORMS.get(name, "valid JSON")
        raise ConfigError(f"invalid configuration:\n  {var}: not valid JSON (accepted form: {form})") from None
