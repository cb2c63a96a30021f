"""The in-package fake case store: same contract as SQLite, kept in dictionaries."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from casebridge.lifecycle import alarm_event, apply_alarm, new_case, opened_event
from casebridge.models import OPEN_STATUSES, Case, CaseDraft, CaseEvent, CaseStatus
from casebridge.store import Outcome, alarm_key
from stream.models import Alarm

__all__ = ["MemoryCaseStore"]


class MemoryCaseStore:
    """For tests and replays that need no file. Not shared between processes."""

    def __init__(self) -> None:
        self._cases: dict[str, Case] = {}
        self._events: dict[str, list[CaseEvent]] = {}
        self._keys: dict[str, str] = {}  # alarm key → case id
        self._number = 0

    async def start(self) -> None:
        return None

    async def aclose(self) -> None:
        return None

    async def record_alarm(self, alarm: Alarm, draft: CaseDraft, *, now: datetime) -> Outcome:
        key = alarm_key(alarm)
        if key in self._keys:
            return Outcome("duplicate", self._cases[self._keys[key]])
        case = next(
            (
                c
                for c in self._cases.values()
                if (c.site, c.sensor, c.condition) == (alarm.site, alarm.sensor, alarm.condition)
                and c.status in OPEN_STATUSES
            ),
            None,
        )
        if case is None:
            if alarm.state == "cleared":
                return Outcome("ignored", None)
            self._number += 1
            case = new_case(self._number, alarm, draft, now=now)
            self._cases[case.id] = case
            self._events[case.id] = [opened_event(case), alarm_event(case.id, alarm, now=now)]
            self._keys[key] = case.id
            return Outcome("opened", case)
        case = apply_alarm(case, alarm, now=now)
        self._cases[case.id] = case
        self._events[case.id].append(alarm_event(case.id, alarm, now=now))
        self._keys[key] = case.id
        return Outcome("appended", case)

    async def list_cases(self, *, statuses: Sequence[CaseStatus] | None = None) -> list[Case]:
        cases = sorted(self._cases.values(), key=lambda c: (c.opened_at, c.id))
        return [c for c in cases if statuses is None or c.status in statuses]

    async def get_case(self, case_id: str) -> Case | None:
        return self._cases.get(case_id.strip().upper())

    async def timeline(self, case_id: str) -> list[CaseEvent]:
        return list(self._events.get(case_id.strip().upper(), []))
