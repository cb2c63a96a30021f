"""Cases, their timelines, people and notifications: what the case bridge works with."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from pydantic import Field

from gateway.models import Frozen, Slug, UtcTime
from stream.models import Condition, Severity

__all__ = [
    "ACTIONS",
    "MAX_NUMBER",
    "MAX_TEXT",
    "OPEN_STATUSES",
    "Action",
    "Case",
    "CaseDraft",
    "CaseEvent",
    "CaseStatus",
    "Delivery",
    "DeliveryDraft",
    "EventKind",
    "MirrorTask",
    "OpenPlan",
    "PhotoInfo",
    "ReadingPoint",
    "Role",
    "SinkStatus",
    "User",
    "check_text",
    "format_case_id",
    "parse_case_id",
]

EventKind = Literal[
    "opened",
    "reopened",
    "alarm_raised",
    "alarm_updated",
    "alarm_cleared",
    "status_changed",
    "assigned",
    "comment",
    "notification_sent",
    "notification_failed",
    "escalated",
    "photo",
    "photo_removed",
]
CaseStatus = Literal["new", "acknowledged", "in_progress", "resolved", "closed", "reopened"]
#: Statuses in which a case counts as open: one such case per (site, sensor, condition) at most.
OPEN_STATUSES: tuple[CaseStatus, ...] = ("new", "acknowledged", "in_progress", "reopened")
#: Statuses in which nobody has acknowledged the case yet: escalation runs.
UNACKNOWLEDGED: tuple[CaseStatus, ...] = ("new", "reopened")

Action = Literal["acknowledge", "start", "resolve", "close", "reopen", "assign", "comment"]
ACTIONS: tuple[Action, ...] = (
    "acknowledge",
    "start",
    "resolve",
    "close",
    "reopen",
    "assign",
    "comment",
)
Role = Literal["technician", "dispatcher", "admin", "integrator"]
#: The languages of the web pages (per user).
Language = Literal["en", "sv"]


#: Stands for the case id in notifications planned before the store assigns the id.
def format_case_id(year: int, number: int) -> str:
    """Human-friendly and sortable: `HV-2026-000123`."""
    return f"HV-{year:04d}-{number:06d}"


#: The highest case number (and event cursor) a store holds: a 32-bit integer column.
MAX_NUMBER = 2**31 - 1


def _digits(text: str) -> bool:
    return 0 < len(text) <= 10 and text.isascii() and text.isdigit()


def parse_case_id(case_id: str) -> int | None:
    """The case number in an id, or None when the text is not a case id — including numbers
    no store can hold and digits other than 0-9 (which `int()` would accept)."""
    if len(case_id) > 40:
        return None
    parts = case_id.strip().upper().split("-")
    if len(parts) != 3 or parts[0] != "HV" or not _digits(parts[1]) or not _digits(parts[2]):
        return None
    number = int(parts[2])
    return number if 1 <= number <= MAX_NUMBER else None


def check_text(value: str) -> str:
    """Text from outside that goes into the store: no NUL (PostgreSQL refuses it) and no lone
    surrogates (not encodable), nor other control characters than tab and newline."""
    for ch in value:
        code = ord(ch)
        if (code < 32 and ch not in "\t\n\r") or code == 127 or 0xD800 <= code <= 0xDFFF:
            raise ValueError(f"text may not contain the control or surrogate character {code:#x}")
    return value


#: Free text a person writes (comments): bounded and clean, the same on the web and the API.
MAX_TEXT = 4000


class ReadingPoint(Frozen):
    ts: UtcTime
    value: float


class CaseDraft(Frozen):
    """Everything needed to open a case, decided before the store is touched (routing and
    enrichment are pure; the store only persists)."""

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
    recent: tuple[ReadingPoint, ...] = ()
    min_since_start: float | None = None
    max_since_start: float | None = None
    sla_due_at: UtcTime | None = None
    auto_resolve: bool = False
    #: the unit of the sensor's readings (and so of the case's value and threshold)
    unit: str | None = None


class DeliveryDraft(Frozen):
    """A notification to send: to whom, how, and what."""

    channel: Literal["email", "webhook"]
    recipient: str
    subject: str
    body: str
    reason: str = "opened"


@dataclass(frozen=True)
class OpenPlan:
    """What happens when an alarm opens or reopens a case: who is told now, and when to escalate
    if nobody acknowledges. `notify` writes the notifications for the case as the store made it
    (with its id), inside the transaction that opens it."""

    notify: Callable[[Case], Sequence[DeliveryDraft]] | None = None
    next_escalation_at: datetime | None = None

    def deliveries(self, case: Case) -> tuple[DeliveryDraft, ...]:
        return tuple(self.notify(case)) if self.notify is not None else ()


class Case(Frozen):
    """One case: one condition at one sensor, from first alarm until a person closes it."""

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
    assignee: str | None = None
    acknowledged_at: UtcTime | None = None
    resolved_at: UtcTime | None = None
    closed_at: UtcTime | None = None
    escalation_level: int = 0
    next_escalation_at: UtcTime | None = None

    @property
    def team(self) -> str:
        return self.draft.team

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES


class CaseEvent(Frozen):
    """One line of a case's timeline. `cursor` orders all events of all cases (the feed)."""

    case_id: str
    at: UtcTime
    kind: EventKind
    actor: str
    text: str
    cursor: int = 0
    #: the status the case went to with this event (opening, reopening, status changes)
    status: CaseStatus | None = None
    #: the id of the photo a `photo` event attached (or a `photo_removed` event removed)
    photo: str | None = None


class PhotoInfo(Frozen):
    """A photo on a case, without its bytes (`/cases/{case}/photos/{id}` serves them)."""

    id: str
    caption: str
    content_type: str
    width: int
    height: int
    size: int
    uploaded_by: str
    uploaded_at: UtcTime

    def filename(self, case_id: str, *, thumb: bool = False) -> str:
        """The name it is served and sent under: ours, never one from outside."""
        extension = ".png" if self.content_type == "image/png" and not thumb else ".jpg"
        return f"{case_id}-{self.id[:8]}{'-thumb' if thumb else ''}{extension}"


class User(Frozen):
    id: Slug
    name: str
    email: str | None = None
    role: Role = "technician"
    language: Language = "en"


class Delivery(Frozen):
    """A notification in the outbox."""

    id: int
    case_id: str
    channel: Literal["email", "webhook"]
    recipient: str
    subject: str
    body: str
    reason: str
    status: Literal["pending", "sent", "failed"]
    attempts: int = Field(ge=0)
    next_attempt_at: datetime


@dataclass(frozen=True)
class MirrorTask:
    """A case a sink has to bring the external system up to: the case as it is now
    (`version`), and what the sink holds of it (its events up to `synced_event`, the external
    record's id)."""

    case: Case
    version: int
    synced_event: int
    remote_id: str | None
    attempts: int


@dataclass(frozen=True)
class SinkStatus:
    """How far behind a sink is."""

    sink: str
    waiting: int
    failing: int
    oldest_change_age: float | None
    last_error: str | None
    #: since when the whole system has been unreachable or refusing (None: it is not)
    down_since: datetime | None = None
