"""The sinks' side of the case store: which cases changed since a sink last mirrored them.

Every change to a case bumps `cases.version` in the transaction that makes the change (and
every event appended to its timeline does too), so the outbox of a sink is the difference
between a case's version and the version the sink last mirrored: nothing to queue beside the
change, nothing a crash between the two can lose, and many changes to one case while the
external system is down are mirrored as one, in order.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, func, insert, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncEngine

from casebridge.errors import CaseNotFoundError
from casebridge.models import OPEN_STATUSES, CaseEvent, MirrorTask, SinkStatus, parse_case_id
from casebridge.store.rows import case_from_row, event_from_row
from casebridge.store.schema import case_events, cases, sink_cases, sinks

__all__ = ["SinkQueries"]


class SinkQueries:
    """What the sinks ask of the store (a part of `SqlCaseStore`)."""

    _engine: AsyncEngine

    async def adopt_sink(self, sink: str, *, now: datetime) -> bool:
        """Register `sink` on its first start: the cases that are no longer open then count as
        mirrored (a sink added after a year does not file a year of history), the open ones
        are mirrored from the start. True the first time."""
        async with self._engine.begin() as conn:
            known = (await conn.execute(select(sinks.c.sink).where(sinks.c.sink == sink))).first()
            if known is not None:
                return False
            await conn.execute(
                insert(sinks).values(sink=sink, adopted_at=now, cursor=None, updated_at=now)
            )
            last_event = (
                select(func.coalesce(func.max(case_events.c.id), 0))
                .where(case_events.c.case_number == cases.c.number)
                .scalar_subquery()
            )
            done = await conn.execute(
                select(cases.c.number, cases.c.version, last_event.label("event")).where(
                    cases.c.status.not_in(OPEN_STATUSES)
                )
            )
            rows = [
                {
                    "sink": sink,
                    "case_number": r.number,
                    "synced_version": r.version,
                    "synced_event": r.event,
                    "attempts": 0,
                    "updated_at": now,
                }
                for r in done
            ]
            if rows:
                await conn.execute(insert(sink_cases), rows)
            return True

    async def mirror_due(self, sink: str, now: datetime, *, limit: int = 100) -> list[MirrorTask]:
        """Cases changed since `sink` last mirrored them and not waiting out a retry, oldest
        case first."""
        query = (
            select(
                cases,
                sink_cases.c.synced_version,
                sink_cases.c.synced_event,
                sink_cases.c.remote_id,
                sink_cases.c.attempts,
            )
            .select_from(_with_progress(sink))
            .where(
                _behind,
                or_(sink_cases.c.next_attempt_at.is_(None), sink_cases.c.next_attempt_at <= now),
            )
            .order_by(cases.c.number)
            .limit(limit)
        )
        async with self._engine.connect() as conn:
            return [
                MirrorTask(
                    case=case_from_row(r),
                    version=r.version,
                    synced_event=r.synced_event or 0,
                    remote_id=r.remote_id,
                    attempts=r.attempts or 0,
                )
                for r in await conn.execute(query)
            ]

    async def events_since(self, case_id: str, after: int) -> list[CaseEvent]:
        """The case's timeline after event `after` (the event's `cursor`), in order."""
        number = parse_case_id(case_id)
        if number is None:
            raise CaseNotFoundError(f"no case {case_id}")
        query = (
            select(case_events)
            .where(case_events.c.case_number == number, case_events.c.id > after)
            .order_by(case_events.c.id)
        )
        async with self._engine.connect() as conn:
            return [event_from_row(case_id, r) for r in await conn.execute(query)]

    async def mirrored(
        self,
        sink: str,
        task: MirrorTask,
        *,
        event: int,
        remote_id: str | None,
        now: datetime,
    ) -> None:
        """`sink` holds the case as of `task.version` and its events up to `event`."""
        values = {
            "synced_version": task.version,
            "synced_event": event,
            "remote_id": remote_id or task.remote_id,
            "attempts": 0,
            "next_attempt_at": None,
            "last_error": None,
            "updated_at": now,
        }
        # two runners of one sink (two processes) may finish out of order: never go back
        await self._sink_row(sink, task, values, values, newer_only=True)

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
    ) -> None:
        """Mirroring failed this time; try again at `retry_at`, keeping what did get through
        (the events up to `event`, the external id)."""
        changes: dict[str, Any] = {
            "attempts": task.attempts + 1,
            "next_attempt_at": retry_at,
            "last_error": error[:2000],
            "updated_at": now,
        }
        if event is not None:
            changes["synced_event"] = event
        if remote_id is not None:
            changes["remote_id"] = remote_id
        first = {
            "synced_version": 0,
            "synced_event": event if event is not None else task.synced_event,
            "remote_id": remote_id or task.remote_id,
            **changes,
        }
        await self._sink_row(sink, task, first, changes)

    async def _sink_row(
        self,
        sink: str,
        task: MirrorTask,
        first: dict[str, Any],
        changes: dict[str, Any],
        *,
        newer_only: bool = False,
    ) -> None:
        """Insert the sink's row for the case with `first`, or apply `changes` to it."""
        number = parse_case_id(task.case.id)
        assert number is not None, "tasks carry well-formed case ids"
        async with self._engine.begin() as conn:
            dialect = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
            statement = dialect(sink_cases).values(sink=sink, case_number=number, **first)
            await conn.execute(
                statement.on_conflict_do_update(
                    index_elements=["sink", "case_number"],
                    set_={k: statement.excluded[k] for k in changes},
                    where=(
                        sink_cases.c.synced_version <= statement.excluded.synced_version
                        if newer_only
                        else None
                    ),
                )
            )

    async def sink_status(self, sink: str, now: datetime) -> SinkStatus:
        """How far behind `sink` is: cases waiting, of them failing, the oldest change waiting,
        the last error (the system's while it is down, else the last case's)."""
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    select(
                        func.count(),
                        func.count(sink_cases.c.last_error),
                        func.min(cases.c.updated_at),
                    )
                    .select_from(_with_progress(sink))
                    .where(_behind)
                )
            ).one()
            error = (
                await conn.execute(
                    select(sink_cases.c.last_error)
                    .where(sink_cases.c.sink == sink, sink_cases.c.last_error.is_not(None))
                    .order_by(sink_cases.c.updated_at.desc())
                    .limit(1)
                )
            ).scalar()
            down = (
                await conn.execute(
                    select(sinks.c.down_since, sinks.c.down_error).where(sinks.c.sink == sink)
                )
            ).first()
        oldest = row[2]
        since = down.down_since if down is not None else None
        return SinkStatus(
            sink=sink,
            waiting=int(row[0]),
            failing=int(row[1]),
            oldest_change_age=(now - oldest).total_seconds() if oldest is not None else None,
            last_error=down.down_error if since is not None and down is not None else error,
            down_since=since,
        )

    async def sink_down(self, sink: str, error: str | None, *, now: datetime) -> None:
        """The external system is down (`error`), or up again (None). The first time of an
        outage is kept."""
        values: dict[str, Any] = {"down_error": error[:2000] if error else None, "updated_at": now}
        query = update(sinks).where(sinks.c.sink == sink)
        if error is None:
            values["down_since"] = None
        else:
            first = bindparam("now_", now, type_=sinks.c.down_since.type)
            values["down_since"] = func.coalesce(sinks.c.down_since, first)
        async with self._engine.begin() as conn:
            await conn.execute(query.values(**values))

    async def sink_cursor(self, sink: str) -> str | None:
        """The sink's change-tracking cursor back from the external system (None: none yet)."""
        async with self._engine.connect() as conn:
            return (await conn.execute(select(sinks.c.cursor).where(sinks.c.sink == sink))).scalar()

    async def set_sink_cursor(self, sink: str, cursor: str | None, *, now: datetime) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(
                update(sinks).where(sinks.c.sink == sink).values(cursor=cursor, updated_at=now)
            )

    async def sink_progress(self, sink: str, case_id: str) -> tuple[int, str | None]:
        """(the last event `sink` has of the case, its external id): (0, None) for none yet."""
        number = parse_case_id(case_id)
        query = select(sink_cases.c.synced_event, sink_cases.c.remote_id).where(
            sink_cases.c.sink == sink, sink_cases.c.case_number == number
        )
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return (row.synced_event, row.remote_id) if row is not None else (0, None)

    async def case_for_remote(self, sink: str, remote_id: str) -> str | None:
        """The husvakt case the external record `remote_id` mirrors, if any."""
        query = (
            select(cases)
            .join(sink_cases, sink_cases.c.case_number == cases.c.number)
            .where(sink_cases.c.sink == sink, sink_cases.c.remote_id == remote_id)
        )
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return case_from_row(row).id if row is not None else None


def _with_progress(sink: str) -> Any:
    """Every case beside `sink`'s progress on it (none yet: NULLs)."""
    return cases.outerjoin(
        sink_cases, and_(sink_cases.c.sink == sink, sink_cases.c.case_number == cases.c.number)
    )


#: A case changed since the sink last mirrored it.
_behind = cases.c.version > func.coalesce(sink_cases.c.synced_version, 0)
