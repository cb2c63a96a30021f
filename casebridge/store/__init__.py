"""Case stores: where cases and timelines persist. `MemoryCaseStore` is the in-package fake;
`SqliteCaseStore` the embedded default. Both pass the same contract tests."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

from casebridge.models import Case, CaseDraft, CaseEvent, CaseStatus
from stream.models import Alarm

__all__ = ["CaseStore", "Outcome", "alarm_event_text", "alarm_key"]


@dataclass(frozen=True)
class Outcome:
    """What recording an alarm did: `opened` a case, `appended` to one, found a `duplicate`
    (the same alarm recorded before), or `ignored` a clear with no case to attach to."""

    result: Literal["opened", "appended", "duplicate", "ignored"]
    case: Case | None


def alarm_key(alarm: Alarm) -> str:
    """Identifies one alarm step, so a replayed alarm is recognised and changes nothing."""
    return f"{alarm.episode}|{alarm.state}|{alarm.ts.isoformat()}"


def alarm_event_text(alarm: Alarm) -> str:
    late = " (late: evaluated from buffered readings)" if alarm.late else ""
    verb = {"raised": "raised", "updated": "escalated to", "cleared": "cleared"}[alarm.state]
    value, level = f"{alarm.value:.1f}", f"{alarm.threshold:g}"
    if alarm.state == "cleared":
        return f"{alarm.condition} cleared at {value} (clear level {level}){late}"
    return f"{alarm.condition} {verb} {alarm.severity} at {value} (threshold {level}){late}"


class CaseStore(Protocol):
    """Persists cases. `record_alarm` is the one write on the alarm path and is idempotent."""

    async def start(self) -> None:
        """Create or check the schema."""

    async def aclose(self) -> None: ...

    async def record_alarm(self, alarm: Alarm, draft: CaseDraft, *, now: datetime) -> Outcome:
        """Open a case, or append to the open case for the same (site, sensor, condition)."""
        ...

    async def list_cases(self, *, statuses: Sequence[CaseStatus] | None = None) -> list[Case]:
        """Cases, oldest first; all when `statuses` is None."""
        ...

    async def get_case(self, case_id: str) -> Case | None: ...

    async def timeline(self, case_id: str) -> list[CaseEvent]: ...
