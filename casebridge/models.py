"""Cases and their timelines: what a person works on."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from gateway.models import Slug, UtcTime
from stream.models import Condition, Severity

__all__ = [
    "OPEN_STATUSES",
    "Case",
    "CaseDraft",
    "CaseEvent",
    "CaseStatus",
    "EventKind",
    "format_case_id",
    "parse_case_id",
]

EventKind = Literal[
    "opened", "alarm_raised", "alarm_updated", "alarm_cleared", "status_changed", "comment"
]
CaseStatus = Literal["new", "acknowledged", "in_progress", "resolved", "closed", "reopened"]
#: Statuses in which a case counts as open: one such case per (site, sensor, condition) at most.
OPEN_STATUSES: tuple[CaseStatus, ...] = ("new", "acknowledged", "in_progress", "reopened")


def format_case_id(year: int, number: int) -> str:
    """Human-friendly and sortable: `HV-2026-000123`."""
    return f"HV-{year:04d}-{number:06d}"


def parse_case_id(case_id: str) -> int | None:
    """The case number in an id, or None when the text is not a case id."""
    parts = case_id.strip().upper().split("-")
    if len(parts) != 3 or parts[0] != "HV" or not parts[1].isdigit() or not parts[2].isdigit():
        return None
    return int(parts[2])


class CaseDraft(BaseModel):
    """Everything needed to open a case, decided before the store is touched (routing and
    enrichment are pure; the store only persists)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    title: str
    team: Slug
    priority: str
    route: str
    site_name: str
    address: str | None = None
    building: str | None = None
    building_name: str | None = None
    room: str | None = None
    room_name: str | None = None
    floor: str | None = None
    asset: str | None = None
    access_notes: str | None = None
    contact: str | None = None


class Case(BaseModel):
    """One case: one condition at one sensor, from first alarm until a person closes it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    site: Slug
    sensor: Slug
    condition: Condition
    status: CaseStatus
    severity: Severity
    rule: str
    threshold: float
    value: float
    episode: str
    condition_active: bool
    opened_at: UtcTime
    updated_at: UtcTime
    draft: CaseDraft

    @property
    def team(self) -> str:
        return self.draft.team


class CaseEvent(BaseModel):
    """One line of a case's timeline."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    case_id: str
    at: UtcTime
    kind: EventKind
    actor: str
    text: str
