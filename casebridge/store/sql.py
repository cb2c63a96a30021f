"""The SQL case store (SQLAlchemy 2, async). SQLite (aiosqlite) is the embedded default.

"One open case per (site, sensor, condition)" is enforced by the database itself, with a
partial unique index over open cases, so two writers raising the same alarm at the same moment
still make one case: the loser of the race gets an integrity error and appends instead.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    TypeDecorator,
    event,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from casebridge.errors import CaseStoreError
from casebridge.lifecycle import alarm_event, apply_alarm, new_case, opened_event
from casebridge.models import (
    OPEN_STATUSES,
    Case,
    CaseDraft,
    CaseEvent,
    CaseStatus,
    format_case_id,
    parse_case_id,
)
from casebridge.store import Outcome, alarm_key
from stream.models import Alarm

__all__ = ["SqlCaseStore", "SqliteCaseStore"]

log = logging.getLogger("husvakt.casebridge.store")


class UtcText(TypeDecorator[datetime]):
    """Timestamps as fixed-width RFC 3339 UTC text: exact, sortable, the same on every dialect."""

    impl = String(32)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> str | None:
        if value is None:
            return None
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    def process_result_value(self, value: str | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


metadata = MetaData()

cases = Table(
    "cases",
    metadata,
    Column("number", Integer, primary_key=True, autoincrement=True),
    Column("site", String(64), nullable=False),
    Column("sensor", String(64), nullable=False),
    Column("condition", String(32), nullable=False),
    Column("status", String(16), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("team", String(64), nullable=False),
    Column("priority", String(4), nullable=False),
    Column("rule", String(64), nullable=False),
    Column("threshold", Float, nullable=False),
    Column("value", Float, nullable=False),
    Column("episode", String(200), nullable=False),
    Column("condition_active", Boolean, nullable=False),
    Column("opened_at", UtcText, nullable=False),
    Column("updated_at", UtcText, nullable=False),
    Column("draft", JSON, nullable=False),
)
_open = cases.c.status.in_(OPEN_STATUSES)
Index(
    "one_open_case_per_condition",
    cases.c.site,
    cases.c.sensor,
    cases.c.condition,
    unique=True,
    sqlite_where=_open,
    postgresql_where=_open,
)

case_events = Table(
    "case_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("case_number", Integer, ForeignKey("cases.number"), nullable=False, index=True),
    Column("at", UtcText, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("actor", String(128), nullable=False),
    Column("text", String(2000), nullable=False),
    Column("alarm_key", String(300), nullable=True, unique=True),
)


def _case_from_row(row: Any) -> Case:
    return Case(
        id=format_case_id(row.opened_at.year, row.number),
        site=row.site,
        sensor=row.sensor,
        condition=row.condition,
        status=row.status,
        severity=row.severity,
        rule=row.rule,
        threshold=row.threshold,
        value=row.value,
        episode=row.episode,
        condition_active=row.condition_active,
        opened_at=row.opened_at,
        updated_at=row.updated_at,
        draft=CaseDraft.model_validate(row.draft),
    )


def _case_values(case: Case) -> dict[str, Any]:
    return {
        "site": case.site,
        "sensor": case.sensor,
        "condition": case.condition,
        "status": case.status,
        "severity": case.severity,
        "team": case.draft.team,
        "priority": case.draft.priority,
        "rule": case.rule,
        "threshold": case.threshold,
        "value": case.value,
        "episode": case.episode,
        "condition_active": case.condition_active,
        "opened_at": case.opened_at,
        "updated_at": case.updated_at,
        "draft": case.draft.model_dump(mode="json"),
    }


def _event_values(number: int, ev: CaseEvent, key: str | None = None) -> dict[str, Any]:
    return {
        "case_number": number,
        "at": ev.at,
        "kind": ev.kind,
        "actor": ev.actor,
        "text": ev.text,
        "alarm_key": key,
    }


class SqlCaseStore:
    """A case store on any SQLAlchemy async engine."""

    def __init__(self, engine: AsyncEngine, *, description: str) -> None:
        self._engine = engine
        self.description = description

    async def start(self) -> None:
        try:
            async with self._engine.begin() as conn:
                await conn.run_sync(metadata.create_all)
        except SQLAlchemyError as exc:
            raise CaseStoreError(f"cannot open case store {self.description}: {exc}") from exc

    async def aclose(self) -> None:
        await self._engine.dispose()

    async def record_alarm(self, alarm: Alarm, draft: CaseDraft, *, now: datetime) -> Outcome:
        # Two attempts: the first may lose a race to open the same case in another writer.
        for attempt in (1, 2):
            try:
                async with self._engine.begin() as conn:
                    return await self._record(conn, alarm, draft, now)
            except IntegrityError:
                if attempt == 2:
                    raise
                log.info(
                    "case for %s/%s/%s opened concurrently; appending",
                    alarm.site,
                    alarm.sensor,
                    alarm.condition,
                )
        raise AssertionError("unreachable")

    async def _record(
        self, conn: AsyncConnection, alarm: Alarm, draft: CaseDraft, now: datetime
    ) -> Outcome:
        key = alarm_key(alarm)
        seen = (
            await conn.execute(
                select(case_events.c.case_number).where(case_events.c.alarm_key == key)
            )
        ).first()
        if seen is not None:
            return Outcome("duplicate", await self._get(conn, seen.case_number))
        row = (
            await conn.execute(
                select(cases).where(
                    cases.c.site == alarm.site,
                    cases.c.sensor == alarm.sensor,
                    cases.c.condition == alarm.condition,
                    _open,
                )
            )
        ).first()
        if row is None:
            if alarm.state == "cleared":
                return Outcome("ignored", None)
            provisional = new_case(0, alarm, draft, now=now)
            result = await conn.execute(insert(cases).values(**_case_values(provisional)))
            key_row = result.inserted_primary_key
            assert key_row is not None, "an INSERT of one row returns its key"
            number = int(key_row[0])
            case = provisional.model_copy(update={"id": format_case_id(now.year, number)})
            await conn.execute(
                insert(case_events).values(_event_values(number, opened_event(case)))
            )
            event_row = _event_values(number, alarm_event(case.id, alarm, now=now), key)
            await conn.execute(insert(case_events).values(event_row))
            return Outcome("opened", case)
        case = apply_alarm(_case_from_row(row), alarm, now=now)
        await conn.execute(
            update(cases).where(cases.c.number == row.number).values(**_case_values(case))
        )
        event_row = _event_values(row.number, alarm_event(case.id, alarm, now=now), key)
        await conn.execute(insert(case_events).values(event_row))
        return Outcome("appended", case)

    async def _get(self, conn: AsyncConnection, number: int) -> Case | None:
        row = (await conn.execute(select(cases).where(cases.c.number == number))).first()
        return _case_from_row(row) if row is not None else None

    async def list_cases(self, *, statuses: Sequence[CaseStatus] | None = None) -> list[Case]:
        query = select(cases).order_by(cases.c.opened_at, cases.c.number)
        if statuses is not None:
            query = query.where(cases.c.status.in_(statuses))
        async with self._engine.connect() as conn:
            return [_case_from_row(r) for r in await conn.execute(query)]

    async def get_case(self, case_id: str) -> Case | None:
        number = parse_case_id(case_id)
        if number is None:
            return None
        async with self._engine.connect() as conn:
            case = await self._get(conn, number)
        return case if case is not None and case.id == case_id.strip().upper() else None

    async def timeline(self, case_id: str) -> list[CaseEvent]:
        case = await self.get_case(case_id)
        if case is None:
            return []
        number = parse_case_id(case.id)
        query = (
            select(case_events)
            .where(case_events.c.case_number == number)
            .order_by(case_events.c.id)
        )
        async with self._engine.connect() as conn:
            return [
                CaseEvent(case_id=case.id, at=r.at, kind=r.kind, actor=r.actor, text=r.text)
                for r in await conn.execute(query)
            ]


class SqliteCaseStore(SqlCaseStore):
    """Cases in one SQLite file (WAL, foreign keys on): the embedded default."""

    def __init__(self, path: Path) -> None:
        self.path = path
        engine = create_async_engine(f"sqlite+aiosqlite:///{path}")

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=10000")
            cursor.close()

        super().__init__(engine, description=str(path))

    async def start(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CaseStoreError(f"cannot create {self.path.parent}: {exc.strerror}") from exc
        await super().start()
