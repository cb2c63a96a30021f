"""Pure rule semantics: `evaluate(state, reading, rule, now) -> (state, alarms)`.

Both engines (embedded and Faust) call this and nothing else decides; it reads no clock and
does no I/O, so a trace replayed through it gives the same alarms every time.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Literal

from gateway.models import Reading
from stream.config import RuleRow
from stream.models import SEVERITY_RANK, Alarm, AlarmState, Severity

__all__ = ["RuleState", "episode_id", "evaluate"]


@dataclass(frozen=True, slots=True)
class RuleState:
    """Where one (sensor, rule) pair stands. `since` is when the value first crossed the level."""

    phase: Literal["idle", "pending", "raised"] = "idle"
    since: datetime | None = None
    severity: Severity | None = None
    episode: str | None = None


def episode_id(rule: RuleRow, reading: Reading, since: datetime) -> str:
    return f"{rule.id}:{reading.site}:{reading.sensor}:{since.strftime('%Y%m%dT%H%M%SZ')}"


def _beyond(value: float, level: float, rule: RuleRow) -> bool:
    return value <= level if rule.below is not None else value > level


def _back(value: float, rule: RuleRow) -> bool:
    assert rule.clear is not None, "validated: enabled rules have a clear level"
    return value >= rule.clear if rule.below is not None else value <= rule.clear


def _severity(value: float, rule: RuleRow) -> tuple[Severity, float]:
    if rule.critical is not None and _beyond(value, rule.critical, rule):
        return "critical", rule.critical
    return "warning", rule.level


def evaluate(
    state: RuleState, reading: Reading, rule: RuleRow, now: datetime, *, late_after: float = 300.0
) -> tuple[RuleState, list[Alarm]]:
    """Advance one threshold rule by one reading (taken in measurement-time order).

    Fault readings change nothing: a broken sensor can neither raise nor clear a condition.
    Between the level and `clear` nothing changes either (hysteresis), so a value hovering at the
    line cannot flap the alarm.
    """
    if reading.quality != "good" or not rule.enabled:
        return state, []
    value, ts = reading.value, reading.ts
    late = (now - ts).total_seconds() > late_after

    def alarm(new: RuleState, what: AlarmState, threshold: float) -> Alarm:
        assert new.since is not None, "a raised state knows when it started"
        assert new.episode is not None, "a raised state has an episode"
        assert new.severity is not None, "a raised state has a severity"
        return Alarm(
            episode=new.episode,
            site=reading.site,
            sensor=reading.sensor,
            condition=rule.condition,
            state=what,
            severity=new.severity,
            value=value,
            threshold=threshold,
            rule=rule.id,
            started_at=new.since,
            ts=ts,
            late=late,
        )

    if state.phase == "raised":
        if _back(value, rule):
            assert rule.clear is not None
            return RuleState(), [alarm(state, "cleared", rule.clear)]
        severity, threshold = _severity(value, rule)
        if state.severity is not None and SEVERITY_RANK[severity] > SEVERITY_RANK[state.severity]:
            escalated = replace(state, severity=severity)
            return escalated, [alarm(escalated, "updated", threshold)]
        return state, []

    if not _beyond(value, rule.level, rule):
        return RuleState(), []  # idle, or a pending crossing that did not last
    since = state.since if state.phase == "pending" and state.since is not None else ts
    if (ts - since).total_seconds() < rule.hold:
        return RuleState(phase="pending", since=since), []
    severity, threshold = _severity(value, rule)
    raised = RuleState(
        phase="raised", since=since, severity=severity, episode=episode_id(rule, reading, since)
    )
    return raised, [alarm(raised, "raised", threshold)]
