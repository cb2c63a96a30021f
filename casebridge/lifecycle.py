"""Pure case lifecycle: what a case looks like after an alarm or a person's action.

    new ──► acknowledged ──► in_progress ──► resolved ──► closed
     │            │                ▲             │  ▲         │
     └────────────┴── (start) ─────┘             ▼  │         │
                                             reopened ◄──────┘

Stores only persist what these functions return, so every store behaves the same.
"""

from __future__ import annotations

from datetime import datetime

from casebridge.errors import LifecycleError
from casebridge.models import (
    Action,
    Case,
    CaseDraft,
    CaseEvent,
    CaseStatus,
    EventKind,
    OpenPlan,
    format_case_id,
)
from stream.models import SEVERITY_RANK, Alarm

__all__ = ["TRANSITIONS", "act", "alarm_event", "apply_alarm", "new_case", "reopen_by_alarm"]

#: action → (statuses it is allowed from, status it leads to)
TRANSITIONS: dict[str, tuple[frozenset[CaseStatus], CaseStatus]] = {
    "acknowledge": (frozenset({"new", "reopened"}), "acknowledged"),
    "start": (frozenset({"new", "reopened", "acknowledged"}), "in_progress"),
    "resolve": (frozenset({"new", "acknowledged", "in_progress", "reopened"}), "resolved"),
    "close": (frozenset({"resolved"}), "closed"),
    "reopen": (frozenset({"resolved", "closed"}), "reopened"),
}

_ALARM_EVENT: dict[str, EventKind] = {
    "raised": "alarm_raised",
    "updated": "alarm_updated",
    "cleared": "alarm_cleared",
}


def _event(case: Case, kind: EventKind, actor: str, text: str, at: datetime) -> CaseEvent:
    return CaseEvent(case_id=case.id, at=at, kind=kind, actor=actor, text=text)


def alarm_event_text(alarm: Alarm) -> str:
    late = " (late: evaluated from buffered readings)" if alarm.late else ""
    verb = {"raised": "raised", "updated": "escalated to", "cleared": "cleared"}[alarm.state]
    why = f" — {alarm.reason}" if alarm.reason and alarm.state != "cleared" else ""
    if alarm.condition not in ("freezing", "fire"):
        if alarm.state == "cleared":
            return f"{alarm.condition} cleared{late}"
        rate = f" at {alarm.value:.1f} °C/min" if alarm.condition == "heat_rise" else ""
        return f"{alarm.condition} {verb} {alarm.severity}{rate}{why}{late}"
    value, level = f"{alarm.value:.1f}", f"{alarm.threshold:g}"
    if alarm.state == "cleared":
        return f"{alarm.condition} cleared at {value} (clear level {level}){late}"
    if alarm.flapping and alarm.state == "updated":
        return f"{alarm.condition} {why.removeprefix(' — ')}{late}"
    return f"{alarm.condition} {verb} {alarm.severity} at {value} (threshold {level}){why}{late}"


def alarm_event(case: Case, alarm: Alarm, *, now: datetime) -> CaseEvent:
    return _event(
        case, _ALARM_EVENT[alarm.state], f"rule:{alarm.rule}", alarm_event_text(alarm), now
    )


def new_case(
    number: int, alarm: Alarm, draft: CaseDraft, plan: OpenPlan, *, now: datetime
) -> tuple[Case, list[CaseEvent]]:
    case = Case(
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
        next_escalation_at=plan.next_escalation_at,
    )
    d = draft
    opened = _event(
        case,
        "opened",
        "husvakt",
        f"{d.title}; routed to {d.team} ({d.priority}) by row {d.route}",
        now,
    )
    return case, [opened, alarm_event(case, alarm, now=now)]


def reopen_by_alarm(
    case: Case, alarm: Alarm, plan: OpenPlan, *, now: datetime
) -> tuple[Case, list[CaseEvent]]:
    """The condition came back within the reopen window after the case was resolved."""
    reopened = case.model_copy(
        update={
            "status": "reopened",
            "severity": alarm.severity,
            "value": alarm.value,
            "threshold": alarm.threshold,
            "episode": alarm.episode,
            "condition_active": True,
            "updated_at": now,
            "resolved_at": None,
            "acknowledged_at": None,
            "escalation_level": 0,
            "next_escalation_at": plan.next_escalation_at,
        }
    )
    text = f"condition returned {_ago(case.resolved_at, now)} after the case was resolved"
    return reopened, [
        _event(reopened, "reopened", f"rule:{alarm.rule}", text, now),
        alarm_event(reopened, alarm, now=now),
    ]


def _ago(then: datetime | None, now: datetime) -> str:
    if then is None:
        return "soon"
    minutes = int((now - then).total_seconds() // 60)
    return f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{minutes} min"


def apply_alarm(case: Case, alarm: Alarm, *, now: datetime) -> tuple[Case, list[CaseEvent]]:
    """A later alarm on an open case: severity only rises; a clear is noted, not a resolution —
    unless the case's rule allows auto-resolving."""
    severity = case.severity
    if alarm.state != "cleared" and SEVERITY_RANK[alarm.severity] > SEVERITY_RANK[severity]:
        severity = alarm.severity
    updated = case.model_copy(
        update={
            "severity": severity,
            "value": alarm.value,
            "threshold": alarm.threshold if alarm.state != "cleared" else case.threshold,
            "episode": alarm.episode,
            "condition_active": alarm.state != "cleared",
            "updated_at": now,
        }
    )
    events = [alarm_event(updated, alarm, now=now)]
    if alarm.state == "cleared" and case.draft.auto_resolve:
        resolved = updated.model_copy(
            update={"status": "resolved", "resolved_at": now, "next_escalation_at": None}
        )
        text = f"{case.status} → resolved (condition cleared; rule {alarm.rule} auto-resolves)"
        events.append(_event(resolved, "status_changed", f"rule:{alarm.rule}", text, now))
        return resolved, events
    return updated, events


def act(
    case: Case,
    action: Action,
    *,
    actor: str,
    now: datetime,
    assignee: str | None = None,
    text: str | None = None,
) -> tuple[Case, list[CaseEvent]]:
    """A person's action. Raises `LifecycleError` when the status does not allow it."""
    note = f": {text}" if text else ""
    if action == "comment":
        if not text or not text.strip():
            raise LifecycleError("a comment needs text")
        return case.model_copy(update={"updated_at": now}), [
            _event(case, "comment", actor, text.strip(), now)
        ]
    if action == "assign":
        if not case.is_open:
            raise LifecycleError(f"{case.id} is {case.status}; only open cases can be assigned")
        if not assignee:
            raise LifecycleError("assign needs a user")
        assigned = case.model_copy(update={"assignee": assignee, "updated_at": now})
        return assigned, [_event(assigned, "assigned", actor, f"assigned to {assignee}{note}", now)]
    allowed, target = TRANSITIONS[action]
    if case.status not in allowed:
        raise LifecycleError(
            f"cannot {action} {case.id}: it is {case.status} "
            f"({action} is allowed from {', '.join(sorted(allowed))})"
        )
    update: dict[str, object] = {"status": target, "updated_at": now}
    if action == "acknowledge":
        update |= {"acknowledged_at": now, "next_escalation_at": None}
    elif action == "start":
        update |= {"acknowledged_at": case.acknowledged_at or now, "next_escalation_at": None}
    elif action == "resolve":
        update |= {"resolved_at": now, "next_escalation_at": None}
    elif action == "close":
        update |= {"closed_at": now}
    elif action == "reopen":
        update |= {"resolved_at": None, "closed_at": None, "acknowledged_at": None}
    changed = case.model_copy(update=update)
    return changed, [
        _event(changed, "status_changed", actor, f"{case.status} → {target}{note}", now)
    ]
