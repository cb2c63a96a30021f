"""The `Alarm` wire contract (v1): a rule's verdict about one sensor."""

from __future__ import annotations

from typing import Literal

from gateway.models import Frozen, Slug, UtcTime

__all__ = ["SEVERITY_RANK", "Alarm", "AlarmState", "Condition", "Severity", "decode_alarm"]

#: An alarm encodes in well under 1 KB; anything larger on the alarms topic is not one.
MAX_ALARM_BYTES = 8192

#: A condition's id: a built-in one (`stream.conditions.BUILT_IN`) or one a config's rule rows
#: name (`damp`); `stream.conditions.Vocabulary` says what each is called.
Condition = Slug
AlarmState = Literal["raised", "updated", "cleared"]
Severity = Literal["warning", "critical"]

SEVERITY_RANK: dict[str, int] = {"warning": 1, "critical": 2}


class Alarm(Frozen):
    """One step of an episode: raised, updated (severity rose) or cleared.

    `episode` is stable for one raise→clear episode, so the case bridge can recognise a replay.
    `flapping` says the value keeps crossing the line, so the alarm stays raised until it has been
    stable; `reason` says in words why (fault kind, rate, how long silent), when there is more to
    say than value and threshold. For `gateway_offline`, `sensor` is the gateway's id.
    """

    episode: str
    site: Slug
    sensor: Slug
    condition: Condition
    state: AlarmState
    severity: Severity
    value: float
    threshold: float
    rule: Slug
    started_at: UtcTime
    ts: UtcTime
    late: bool = False
    flapping: bool = False
    reason: str | None = None

    def to_wire(self) -> dict[str, object]:
        return self.model_dump(mode="json")


def decode_alarm(value: bytes) -> Alarm:
    """An alarm from the alarms topic, bounded and strict (no coercion from other types).
    Raises ValueError."""
    if len(value) > MAX_ALARM_BYTES:
        raise ValueError(f"an alarm of {len(value)} bytes (at most {MAX_ALARM_BYTES})")
    try:
        return Alarm.model_validate_json(value, strict=True)
    except ValueError:
        raise
    except (OverflowError, RecursionError, TypeError) as exc:
        raise ValueError(f"not an alarm ({type(exc).__name__})") from exc
