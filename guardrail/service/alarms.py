"""CloudWatch alarm state changes in their three shapes, reduced to what the policy needs."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from guardrail.core.errors import AlarmEventError
from guardrail.core.models import Level
from guardrail.core.scopes import GLOBAL

if TYPE_CHECKING:
    from guardrail.service.engine import Engine

AlarmStateValue = Literal["ALARM", "OK", "INSUFFICIENT_DATA"]


@dataclass(frozen=True, slots=True)
class AlarmChange:
    name: str
    state: AlarmStateValue
    reason: str
    shape: Literal["eventbridge", "lambda-action", "sns"]
    composite: bool = False


class _State(BaseModel):
    model_config = ConfigDict(extra="ignore")
    value: AlarmStateValue
    reason: str = ""


class _EventBridgeDetail(BaseModel):
    model_config = ConfigDict(extra="ignore")
    alarmName: str
    state: _State
    configuration: dict[str, Any] = {}


class _LambdaActionData(BaseModel):
    model_config = ConfigDict(extra="ignore")
    alarmName: str
    state: _State
    configuration: dict[str, Any] = {}


class _SnsAlarm(BaseModel):
    model_config = ConfigDict(extra="ignore")
    AlarmName: str
    NewStateValue: AlarmStateValue
    NewStateReason: str = ""


def _composite(configuration: Mapping[str, Any]) -> bool:
    return "alarmRule" in configuration and "metrics" not in configuration


def parse_alarm_events(event: Mapping[str, Any]) -> list[AlarmChange]:
    """EventBridge `CloudWatch Alarm State Change`, the alarm's direct Lambda action payload
    (`alarmData`), or an SNS notification whose `Message` is the alarm JSON (possibly several records)."""
    if not isinstance(event, Mapping):
        raise AlarmEventError(f"not a CloudWatch alarm state change: a JSON {type(event).__name__}, not an object")
    try:
        if event.get("detail-type") == "CloudWatch Alarm State Change":
            d = _EventBridgeDetail.model_validate(event.get("detail"))
            return [AlarmChange(d.alarmName, d.state.value, d.state.reason, "eventbridge", _composite(d.configuration))]
        if "alarmData" in event:
            a = _LambdaActionData.model_validate(event["alarmData"])
            return [
                AlarmChange(a.alarmName, a.state.value, a.state.reason, "lambda-action", _composite(a.configuration))
            ]
        records = event.get("Records")
        if isinstance(records, list) and records:
            out = []
            for record in records:
                sns = record.get("Sns") if isinstance(record, Mapping) else None
                message = sns.get("Message") if isinstance(sns, Mapping) else None
                if not isinstance(message, str):
                    raise AlarmEventError("SNS record without a Message string")
                s = _SnsAlarm.model_validate(json.loads(message))
                out.append(AlarmChange(s.AlarmName, s.NewStateValue, s.NewStateReason, "sns"))
            return out
    except (ValidationError, json.JSONDecodeError) as exc:
        raise AlarmEventError(f"malformed alarm event: {exc}") from None
    raise AlarmEventError(
        "not a CloudWatch alarm state change (expected EventBridge detail-type, alarmData, or SNS Records)"
    )


def apply_alarm(engine: Engine, alarm_levels: Mapping[str, Level], change: AlarmChange) -> dict[str, Any]:
    """Escalate on ALARM, clear on OK what this alarm set; an unmapped alarm changes nothing and says so."""
    level = alarm_levels.get(change.name)
    base: dict[str, Any] = {"alarm": change.name, "state": change.state, "shape": change.shape}
    if level is None:
        return {
            **base,
            "changed": False,
            "detail": f"alarm {change.name!r} is not mapped to a level (GUARDRAIL_ALARM_LEVELS): nothing changed",
        }
    committed = engine.alarm(alarm=change.name, state=change.state, level=level, scope=GLOBAL)
    if not committed:
        return {
            **base,
            "changed": False,
            "detail": f"{change.state}: level stays {engine.flags.get(GLOBAL).level.label}",
        }
    t = committed[0].transition
    return {
        **base,
        "changed": t.from_level != t.to_level,
        "detail": f"{t.from_level.label} -> {t.to_level.label}: {t.reason}",
    }
