"""Pure case lifecycle: what a case looks like after an alarm or a person's action.

    new ──► acknowledged ──► in_progress ──► resolved ──► closed
     │            │                ▲             │  ▲         │
     └────────────┴── (start) ─────┘             ▼  │         │
                                             reopened ◄──────┘

Stores only persist what these functions return, so every store behaves the same.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from casebridge.errors import LifecycleError
from casebridge.models import (
    Action,
    Case,
    CaseDraft,
    CaseEvent,
    CaseStatus,
    DeliveryDraft,
    EventKind,
    OpenPlan,
    format_case_id,
)
from gateway.config import format_duration
from stream.conditions import is_threshold
from stream.models import SEVERITY_RANK, Alarm

__all__ = [
    "TRANSITIONS",
    "Ledger",
    "Outcome",
    "act",
    "alarm_event",
    "alarm_key",
    "apply_alarm",
    "decide",
    "new_case",
    "reopen_by_alarm",
]

#: What recording an alarm did: `opened` a case, `reopened` a recently resolved one, `appended`
#: to an open one, found a `duplicate` (the same alarm recorded before), or `ignored` a clear
#: with no open case to attach to.
Result = Literal["opened", "reopened", "appended", "duplicate", "ignored"]
#: (site, sensor, condition): what at most one open case exists for.
Key = tuple[str, str, str]

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
    """An event on `case` as it is after the event (status changes carry the new status)."""
    status = case.status if kind in ("opened", "reopened", "status_changed") else None
    return CaseEvent(case_id=case.id, at=at, kind=kind, actor=actor, text=text, status=status)


def alarm_event_text(alarm: Alarm, unit: str | None = None) -> str:
    """The timeline's words for an alarm; `unit`: the sensor's (an on/off sensor's value reads
    as its state; temperatures, the most of them, without their °C)."""
    late = " (late: evaluated from buffered readings)" if alarm.late else ""
    verb = {"raised": "raised", "updated": "escalated to", "cleared": "cleared"}[alarm.state]
    why = f" — {alarm.reason}" if alarm.reason and alarm.state != "cleared" else ""
    if not is_threshold(alarm.condition):
        if alarm.state == "cleared":
            return f"{alarm.condition} cleared{late}"
        rate = f" at {alarm.value:.1f} °C/min" if alarm.condition == "heat_rise" else ""
        return f"{alarm.condition} {verb} {alarm.severity}{rate}{why}{late}"
    if unit == "bool":
        shown = "on" if alarm.value >= 0.5 else "off"
        if alarm.state == "cleared":
            return f"{alarm.condition} cleared ({shown}){late}"
        return f"{alarm.condition} {verb} {alarm.severity} ({shown}){why}{late}"
    suffix = "" if unit in (None, "°C") else f" {unit}"
    value, level = f"{alarm.value:.1f}{suffix}", f"{alarm.threshold:g}{suffix}"
    if alarm.state == "cleared":
        return f"{alarm.condition} cleared at {value} (clear level {level}){late}"
    if alarm.flapping and alarm.state == "updated":
        return f"{alarm.condition} {why.removeprefix(' — ')}{late}"
    return f"{alarm.condition} {verb} {alarm.severity} at {value} (threshold {level}){why}{late}"


def alarm_event(case: Case, alarm: Alarm, *, now: datetime) -> CaseEvent:
    return _event(
        case,
        _ALARM_EVENT[alarm.state],
        f"rule:{alarm.rule}",
        alarm_event_text(alarm, case.draft.unit),
        now,
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
    return "soon" if then is None else format_duration((now - then).total_seconds())


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


@dataclass(frozen=True)
class Outcome:
    """What recording one alarm did, and the case as it stood afterwards."""

    result: Result
    case: Case | None


def alarm_key(alarm: Alarm) -> str:
    """Identifies one alarm step, so a replayed alarm is recognised and changes nothing."""
    return f"{alarm.episode}|{alarm.state}|{alarm.ts.isoformat()}"


def decide(
    alarm: Alarm,
    *,
    seen: bool,
    open_case: Case | None,
    latest: Case | None,
    now: datetime,
    reopen_window: float,
) -> Result:
    """What an alarm does to the cases of its (site, sensor, condition): `seen` — this very alarm
    was recorded before; `open_case` — the open case, if any; `latest` — the newest case."""
    if seen:
        return "duplicate"
    if open_case is not None:
        return "appended"
    if alarm.state == "cleared":
        return "ignored"
    if (
        latest is not None
        and latest.status == "resolved"
        and latest.resolved_at is not None
        and now - latest.resolved_at <= timedelta(seconds=reopen_window)
    ):
        return "reopened"
    return "opened"


def case_key(case: Case) -> Key:
    return (case.site, case.sensor, case.condition)


@dataclass
class Ledger:
    """A batch of alarms applied to the cases they touch, without a database: the store loads
    what the batch needs (`cases` by number, the open and newest case per key, the alarm keys
    already recorded, the next free case number), `record`s each alarm in order, then writes
    what changed in one transaction — every case row once, then the events and deliveries in
    the order they happened."""

    cases: dict[int, Case]
    loaded: dict[int, Case]  # the cases as the store held them, to see what changed
    open: dict[Key, int]
    latest: dict[Key, int]
    seen: dict[str, int]
    next_number: int
    opened: list[int] = field(default_factory=list)
    changed: dict[int, None] = field(default_factory=dict)  # ordered set
    events: list[tuple[int, CaseEvent, str | None]] = field(default_factory=list)
    deliveries: list[tuple[int, DeliveryDraft]] = field(default_factory=list)

    def record(
        self,
        alarm: Alarm,
        prepare: Callable[[], tuple[CaseDraft, OpenPlan]],
        *,
        now: datetime,
        reopen_window: float,
    ) -> Outcome:
        """Apply one alarm; `prepare` gives the draft and plan of a case it opens or reopens."""
        key = alarm_key(alarm)
        where = (alarm.site, alarm.sensor, alarm.condition)
        number = self.open.get(where)
        latest = self.latest.get(where)
        result = decide(
            alarm,
            seen=key in self.seen,
            open_case=self.cases[number] if number is not None else None,
            latest=self.cases[latest] if latest is not None else None,
            now=now,
            reopen_window=reopen_window,
        )
        if result == "duplicate":
            return Outcome(result, self.cases.get(self.seen[key]))
        if result == "ignored":
            return Outcome(result, None)
        plan = OpenPlan()
        if result == "appended":
            assert number is not None
            case, events = apply_alarm(self.cases[number], alarm, now=now)
        elif result == "reopened":
            _, plan = prepare()
            assert latest is not None
            number = latest
            case, events = reopen_by_alarm(self.cases[number], alarm, plan, now=now)
        else:
            draft, plan = prepare()
            number = self.next_number
            self.next_number += 1
            self.opened.append(number)
            self.latest[where] = number
            case, events = new_case(number, alarm, draft, plan, now=now)
        self.cases[number] = case
        self.changed[number] = None
        self.seen[key] = number
        if case.is_open:
            self.open[where] = number
        else:
            self.open.pop(where, None)
        # The alarm key goes on the alarm's own event, which is unique per alarm step.
        self.events.extend(
            (number, e, key if e.kind.startswith("alarm_") else None) for e in events
        )
        if result != "appended":  # opened or reopened
            self.deliveries.extend((number, d) for d in plan.deliveries(case))
        return Outcome(result, case)
