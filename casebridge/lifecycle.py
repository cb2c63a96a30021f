"""Pure case lifecycle: what a case looks like after an alarm. Stores only persist the result."""

from __future__ import annotations

from datetime import datetime

from casebridge.models import Case, CaseDraft, CaseEvent, EventKind, format_case_id
from casebridge.store import alarm_event_text
from stream.models import SEVERITY_RANK, Alarm

__all__ = ["alarm_event", "apply_alarm", "new_case"]


_ALARM_EVENT: dict[str, EventKind] = {
    "raised": "alarm_raised",
    "updated": "alarm_updated",
    "cleared": "alarm_cleared",
}


def new_case(number: int, alarm: Alarm, draft: CaseDraft, *, now: datetime) -> Case:
    return Case(
        id=format_case_id(now.year, number),
        site=alarm.site,
        sensor=alarm.sensor,
        condition=alarm.condition,
        status="new",
        severity=alarm.severity,
        rule=alarm.rule,
        threshold=alarm.threshold,
        value=alarm.value,
        episode=alarm.episode,
        condition_active=alarm.state != "cleared",
        opened_at=now,
        updated_at=now,
        draft=draft,
    )


def apply_alarm(case: Case, alarm: Alarm, *, now: datetime) -> Case:
    """A later alarm on an open case: severity only rises; a clear is noted, not a resolution."""
    severity = case.severity
    if alarm.state != "cleared" and SEVERITY_RANK[alarm.severity] > SEVERITY_RANK[severity]:
        severity = alarm.severity
    return case.model_copy(
        update={
            "severity": severity,
            "value": alarm.value,
            "threshold": alarm.threshold if alarm.state != "cleared" else case.threshold,
            "episode": alarm.episode,
            "condition_active": alarm.state != "cleared",
            "updated_at": now,
        }
    )


def alarm_event(case_id: str, alarm: Alarm, *, now: datetime) -> CaseEvent:
    return CaseEvent(
        case_id=case_id,
        at=now,
        kind=_ALARM_EVENT[alarm.state],
        actor=f"rule:{alarm.rule}",
        text=alarm_event_text(alarm),
    )


def opened_event(case: Case) -> CaseEvent:
    d = case.draft
    return CaseEvent(
        case_id=case.id,
        at=case.opened_at,
        kind="opened",
        actor="husvakt",
        text=f"{d.title}; routed to {d.team} ({d.priority}) by row {d.route}",
    )
