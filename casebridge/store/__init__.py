"""Case stores: where cases, timelines, users and the notification outbox persist.

`SqlCaseStore` runs on SQLite (the embedded default) and PostgreSQL; `MemoryCaseStore` is the
in-package fake (the same code on an in-memory SQLite database). All pass one contract suite.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from casebridge.lifecycle import Outcome, alarm_key
from casebridge.models import (
    Action,
    Case,
    CaseDraft,
    CaseEvent,
    CaseStatus,
    Delivery,
    DeliveryDraft,
    MirrorTask,
    OpenPlan,
    PhotoInfo,
    SinkStatus,
    User,
)
from casebridge.store.readings import KeptReading
from stream.models import Alarm

if TYPE_CHECKING:
    from casebridge.photos import Photo

__all__ = ["AlarmEntry", "CaseFilter", "CaseStore", "KeptReading", "Outcome", "alarm_key"]


@dataclass(frozen=True)
class AlarmEntry:
    """An alarm to record, and how to make what a case it opens or reopens needs: the case's
    draft (routing, enrichment) and who is told (`prepare`, called only for such alarms — most
    alarms of a storm append to a case that is already open)."""

    alarm: Alarm
    prepare: Callable[[], tuple[CaseDraft, OpenPlan]]

    @classmethod
    def ready(cls, alarm: Alarm, draft: CaseDraft, plan: OpenPlan) -> AlarmEntry:
        return cls(alarm, lambda: (draft, plan))


@dataclass(frozen=True)
class CaseFilter:
    """Which cases to list; None means any."""

    statuses: Sequence[CaseStatus] | None = None
    sites: Sequence[str] | None = None
    conditions: Sequence[str] | None = None
    teams: Sequence[str] | None = None
    assignees: Sequence[str] | None = None


class CaseStore(Protocol):
    """Persists cases. Every write is one transaction: nothing is ever half-written."""

    async def start(self) -> None:
        """Create or migrate the schema to the current version."""

    async def aclose(self) -> None: ...

    async def record_alarm(
        self, alarm: Alarm, draft: CaseDraft, plan: OpenPlan, *, now: datetime, reopen_window: float
    ) -> Outcome:
        """Open a case (queueing `plan`'s notifications with it), reopen one resolved less than
        `reopen_window` seconds ago, or append to the open case for (site, sensor, condition)."""
        ...

    async def record_alarms(
        self, entries: Sequence[AlarmEntry], *, now: datetime, reopen_window: float
    ) -> list[Outcome]:
        """`record_alarm` for each entry in order, all in one transaction: one outcome each."""
        ...

    async def act(
        self,
        case_id: str,
        action: Action,
        *,
        actor: str,
        now: datetime,
        assignee: str | None = None,
        text: str | None = None,
    ) -> Case:
        """A person's action on a case; raises `CaseNotFoundError` or `LifecycleError`."""
        ...

    async def list_cases(self, where: CaseFilter | None = None) -> list[Case]:
        """Cases, oldest first."""
        ...

    async def get_case(self, case_id: str) -> Case | None: ...

    async def timeline(self, case_id: str) -> list[CaseEvent]: ...

    async def events_after(self, cursor: int, *, limit: int = 100) -> list[CaseEvent]:
        """Every case's events with a cursor above `cursor`, in order (the event feed)."""
        ...

    async def latest_cursor(self) -> int:
        """The cursor of the newest event (0 without any): where a live feed starts."""

    async def add_user(self, user: User, *, now: datetime) -> None: ...

    async def get_user(self, user_id: str) -> User | None: ...

    async def list_users(self) -> list[User]: ...

    async def add_token(
        self,
        user_id: str,
        token_hash: str,
        *,
        label: str,
        now: datetime,
        expires_at: datetime | None = None,
    ) -> None: ...

    async def user_for_token(self, token_hash: str, *, now: datetime | None = None) -> User | None:
        """The user of an API token that has not expired (one with an expiry needs `now`)."""

    async def delete_token(self, token_hash: str) -> None: ...

    async def add_session(
        self, user_id: str, session_hash: str, *, now: datetime, expires_at: datetime
    ) -> None:
        """A web session (not an API token): valid until `expires_at`, and while used."""

    async def user_for_session(
        self, session_hash: str, *, now: datetime, idle: float
    ) -> User | None:
        """The user of a live session; a session unused for `idle` seconds or past its
        expiry ends here."""

    async def sign_in_failures(self, keys: Sequence[str]) -> dict[str, tuple[int, datetime]]:
        """Key → (failed sign-ins, the latest) for those of `keys` that have any."""
        ...

    async def sign_in_failed(self, keys: Sequence[str], *, now: datetime, forget: float) -> None:
        """Count a failed sign-in under each key; forget keys quiet for `forget` seconds."""

    async def sign_in_succeeded(self, key: str) -> None: ...

    async def end_session(self, session_hash: str) -> None: ...

    async def revoke(
        self, user_id: str, *, sessions_too: bool = True, tokens_too: bool = True
    ) -> tuple[int, int]:
        """End the user's web sessions and/or delete their API tokens: (sessions, tokens)."""
        ...

    async def set_password(self, user_id: str, password_hash: str) -> None:
        """Set the password; every web session of the user ends."""

    async def password_hash(self, user_id: str) -> str | None: ...

    async def due_deliveries(self, now: datetime, *, limit: int = 50) -> list[Delivery]: ...

    async def delivery_result(
        self, delivery: Delivery, *, error: str | None, now: datetime, retry_at: datetime | None
    ) -> None:
        """Record a send: success (`error` None), a retry at `retry_at`, or a final failure."""
        ...

    async def due_escalations(self, now: datetime, *, limit: int = 50) -> list[Case]: ...

    async def next_due(self) -> datetime | None:
        """When the next delivery attempt or escalation falls due (None: none is pending)."""
        ...

    async def escalate(
        self,
        case_id: str,
        *,
        level: int,
        next_at: datetime | None,
        deliveries: Sequence[DeliveryDraft],
        text: str,
        now: datetime,
    ) -> bool:
        """Move an unacknowledged case to escalation `level`, queueing `deliveries`. Returns
        False (and changes nothing) if the case was acknowledged or escalated meanwhile."""
        ...

    async def keep_readings(self, rows: Sequence[KeptReading]) -> None:
        """Keep device readings; one the store already has (a batch sent again) is skipped."""

    async def add_manual_reading(self, reading: KeptReading) -> KeptReading:
        """A reading a person entered: kept, and pending until the rules evaluated it; raises
        `DuplicateReadingError` when the sensor has a reading by hand at that time."""
        ...

    async def pending_readings(self, *, limit: int = 500) -> list[KeptReading]:
        """Readings by hand the rules have not evaluated yet, in the order entered."""
        ...

    async def readings_evaluated(self, ids: Sequence[int]) -> None: ...

    async def forget_readings(self, before: datetime) -> int:
        """Delete kept readings taken before `before`; the number deleted."""
        ...

    async def latest_readings(self, site: str) -> dict[str, KeptReading]:
        """Each sensor's newest kept reading at `site`."""
        ...

    async def readings_between(
        self,
        site: str,
        start: datetime,
        end: datetime,
        *,
        sensors: Sequence[str] | None = None,
        limit: int = 1_000_000,
    ) -> list[KeptReading]:
        """Kept readings at `site` from `start` up to `end`, by sensor and time."""
        ...

    # --- photos --------------------------------------------------------------------------

    async def attach_photo(
        self,
        case_id: str,
        photo: Photo,
        *,
        caption: str,
        actor: str,
        now: datetime,
        per_case: int,
    ) -> tuple[CaseEvent, PhotoInfo]:
        """Attach a prepared photo with its `photo` event, in one transaction: the event and
        what was stored. Raises `CaseNotFoundError`, or `PhotoError` when the case holds
        `per_case` photos."""
        ...

    async def remove_photo(
        self, case_id: str, photo_id: str, *, actor: str, now: datetime, reason: str = ""
    ) -> CaseEvent:
        """Delete a photo for good with a `photo_removed` event; `CaseNotFoundError` when the
        case has no such photo."""
        ...

    async def photos(self, case_id: str) -> list[PhotoInfo]: ...

    async def photo_bytes(
        self, case_id: str, photo_id: str, *, thumb: bool = False
    ) -> tuple[PhotoInfo, bytes] | None: ...

    # --- reports ---------------------------------------------------------------------------

    async def report_rows(
        self,
        *,
        start: datetime,
        end: datetime,
        now: datetime,
        by: Sequence[str],
        sites: Sequence[str] | None = None,
        teams: Sequence[str] | None = None,
        months: Sequence[tuple[str, datetime, datetime]] = (),
    ) -> list[dict[str, Any]]:
        """Report figures per group of `by` over the cases opened from `start` to `end`."""
        ...

    # --- sinks (mirroring cases to external systems) -------------------------------------

    async def adopt_sink(self, sink: str, *, now: datetime) -> bool:
        """Register a sink on its first start (cases no longer open count as mirrored)."""
        ...

    async def mirror_due(self, sink: str, now: datetime, *, limit: int = 100) -> list[MirrorTask]:
        """Cases changed since the sink last mirrored them, not waiting out a retry."""
        ...

    async def events_since(self, case_id: str, after: int) -> list[CaseEvent]:
        """The case's timeline after event `after`."""
        ...

    async def mirrored(
        self, sink: str, task: MirrorTask, *, event: int, remote_id: str | None, now: datetime
    ) -> None: ...

    async def mirror_failed(
        self,
        sink: str,
        task: MirrorTask,
        *,
        error: str,
        retry_at: datetime,
        now: datetime,
        event: int | None = None,
        remote_id: str | None = None,
    ) -> None: ...

    async def sink_status(self, sink: str, now: datetime) -> SinkStatus: ...

    async def sink_down(self, sink: str, error: str | None, *, now: datetime) -> None:
        """The sink's external system is down (`error`) or up again (None)."""
        ...

    async def sink_cursor(self, sink: str) -> str | None: ...

    async def set_sink_cursor(self, sink: str, cursor: str | None, *, now: datetime) -> None: ...

    async def sink_progress(self, sink: str, case_id: str) -> tuple[int, str | None]: ...

    async def case_for_remote(self, sink: str, remote_id: str) -> str | None: ...
