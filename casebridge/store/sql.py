"""The SQL case store (SQLAlchemy 2, async): SQLite (aiosqlite) or PostgreSQL (asyncpg).

"One open case per (site, sensor, condition)" is enforced by the database itself, with a
partial unique index over open cases, so two writers raising the same alarm at the same moment
still make one case: the loser of the race gets an integrity error and appends instead. The
schema is managed by Alembic migrations, applied by `start()`.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import random
import tempfile
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import (
    Connection,
    and_,
    bindparam,
    event,
    func,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.exc import (
    DBAPIError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from casebridge.config import CaseStoreConfig
from casebridge.errors import (
    CaseNotFoundError,
    CaseStoreError,
    LifecycleError,
    StoreUnavailableError,
)
from casebridge.lifecycle import Ledger, act, alarm_key
from casebridge.models import (
    OPEN_STATUSES,
    Action,
    Case,
    CaseDraft,
    CaseEvent,
    OpenPlan,
    format_case_id,
    parse_case_id,
)
from casebridge.store import AlarmEntry, CaseFilter, Outcome
from casebridge.store.deliveries import DeliveryQueries
from casebridge.store.people import PeopleQueries
from casebridge.store.photos import PhotoQueries
from casebridge.store.readings import ReadingQueries
from casebridge.store.reports import ReportQueries
from casebridge.store.rows import (
    RACE_RETRIES,
    among,
    case_from_row,
    case_values,
    changed_columns,
    delivery_values,
    event_from_row,
    event_values,
    for_update,
    raced,
)
from casebridge.store.schema import (
    case_events,
    cases,
    deliveries,
    metadata,
    open_case,
)
from casebridge.store.sinks import SinkQueries
from gateway.secrets import private_file
from stream.models import Alarm

__all__ = ["MIGRATIONS", "MemoryCaseStore", "SqlCaseStore", "SqliteCaseStore", "open_store"]

log = logging.getLogger("husvakt.casebridge.store")

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
#: Alarms recorded in one transaction (a bigger batch is split).
MAX_BATCH = 500


def _migrate(connection: Connection) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


class SqlCaseStore(
    PeopleQueries, DeliveryQueries, ReadingQueries, SinkQueries, PhotoQueries, ReportQueries
):
    """A case store on any SQLAlchemy async engine (SQLite or PostgreSQL)."""

    def __init__(self, engine: AsyncEngine, *, description: str) -> None:
        self._engine = engine
        self._writing = asyncio.Lock()  # alarm batches from one process take turns
        self.description = description

    @classmethod
    def from_url(cls, url: str) -> SqlCaseStore:
        """`postgresql+asyncpg://user@host/db` or `sqlite+aiosqlite:///path`."""
        if url.startswith("sqlite"):
            return SqliteCaseStore(Path(url.split(":///", 1)[1]))
        engine = create_async_engine(url, pool_size=5, max_overflow=5, pool_pre_ping=True)
        return cls(engine, description=engine.url.render_as_string(hide_password=True))

    async def start(self) -> None:
        """Migrate to the current schema. Two processes starting at once (a service and the
        API, say) must not race to migrate a new database: PostgreSQL serialises them with an
        advisory lock (SQLite stores take a file lock around this)."""
        try:
            async with self._engine.begin() as conn:
                if conn.dialect.name == "postgresql":
                    await conn.execute(text("SELECT pg_advisory_xact_lock(4242001)"))
                await conn.run_sync(_migrate)
        except (SQLAlchemyError, OSError) as exc:
            raise CaseStoreError(f"cannot open case store {self.description}: {exc}") from exc

    async def aclose(self) -> None:
        await self._engine.dispose()

    async def schema_drift(self) -> list[object]:
        """Differences between the database and the schema this version declares (empty when
        the migrations and `schema.py` agree)."""

        def compare(sync_conn: Connection) -> list[object]:
            context = MigrationContext.configure(sync_conn)
            return list(compare_metadata(context, metadata))

        async with self._engine.connect() as conn:
            return await conn.run_sync(compare)

    # --- alarms ----------------------------------------------------------------------------

    async def record_alarm(
        self, alarm: Alarm, draft: CaseDraft, plan: OpenPlan, *, now: datetime, reopen_window: float
    ) -> Outcome:
        entry = AlarmEntry.ready(alarm, draft, plan)
        (outcome,) = await self.record_alarms([entry], now=now, reopen_window=reopen_window)
        return outcome

    async def record_alarms(
        self, entries: Sequence[AlarmEntry], *, now: datetime, reopen_window: float
    ) -> list[Outcome]:
        outcomes: list[Outcome] = []
        for start in range(0, len(entries), MAX_BATCH):
            chunk = entries[start : start + MAX_BATCH]
            try:
                outcomes += await self._record_alarms(chunk, now, reopen_window)
            except (OperationalError, InterfaceError, OSError) as exc:
                raise StoreUnavailableError(f"the case store is unavailable: {exc}") from exc
            except DBAPIError as exc:
                if exc.connection_invalidated:
                    raise StoreUnavailableError(
                        f"the case store connection was lost: {exc}"
                    ) from exc
                raise
        return outcomes

    async def _record_alarms(
        self, entries: Sequence[AlarmEntry], now: datetime, reopen_window: float
    ) -> list[Outcome]:
        # A writer that loses a race (to open the same case, to take the same case number, or
        # to record the same alarm) gets an integrity error from the unique indexes; on retry it
        # reads the winner's commit. In one process, writers take turns (one transaction each).
        for attempt in range(1, RACE_RETRIES + 1):
            try:
                async with self._writing, self._engine.begin() as conn:
                    if conn.dialect.name == "sqlite":
                        # Read and write as one: another process's writer waits (busy_timeout).
                        await conn.exec_driver_sql("BEGIN IMMEDIATE")
                    ledger = await self._ledger(conn, entries)
                    outcomes = [
                        ledger.record(e.alarm, e.prepare, now=now, reopen_window=reopen_window)
                        for e in entries
                    ]
                    await self._write(conn, ledger, now)
                    return outcomes
            except (IntegrityError, DBAPIError) as exc:
                if attempt == RACE_RETRIES or not raced(exc):
                    raise
                log.info("%d alarm(s) raced another writer; retrying on its commit", len(entries))
                await asyncio.sleep(random.uniform(0, 0.01 * attempt))  # noqa: S311 - jitter
        raise AssertionError("unreachable")

    @staticmethod
    async def _ledger(conn: AsyncConnection, entries: Sequence[AlarmEntry]) -> Ledger:
        """What the batch needs to know: the cases of its keys (open and newest), the alarm
        keys already recorded, and the next free case number — three to four queries."""
        keys = [alarm_key(e.alarm) for e in entries]
        sensors = list({e.alarm.sensor for e in entries})
        seen = {
            r.alarm_key: r.case_number
            for r in await conn.execute(
                select(case_events.c.alarm_key, case_events.c.case_number).where(
                    among(conn, case_events.c.alarm_key, keys)
                )
            )
        }
        newest = (
            select(func.max(cases.c.number))
            .where(among(conn, cases.c.sensor, sensors))
            .group_by(cases.c.site, cases.c.sensor, cases.c.condition)
        )
        # the cases of the batch's sensors (of any site; more than needed, in one statement)
        rows = list(
            await conn.execute(
                for_update(
                    conn,
                    select(cases)
                    .where(
                        or_(
                            and_(among(conn, cases.c.sensor, sensors), open_case),
                            cases.c.number.in_(newest.scalar_subquery()),
                            among(conn, cases.c.number, list(set(seen.values()))),
                        )
                    )
                    .order_by(cases.c.number),
                )
            )
        )
        top = (await conn.execute(select(func.max(cases.c.number)))).scalar()
        loaded = {r.number: case_from_row(r) for r in rows}
        ledger = Ledger(
            cases=dict(loaded),
            loaded=loaded,
            open={},
            latest={},
            seen=seen,
            next_number=int(top or 0) + 1,
        )
        for r in sorted(rows, key=lambda r: r.number):
            k = (r.site, r.sensor, r.condition)
            ledger.latest[k] = r.number
            if r.status in OPEN_STATUSES:
                ledger.open[k] = r.number
        return ledger

    @staticmethod
    async def _write(conn: AsyncConnection, ledger: Ledger, now: datetime) -> None:
        """Every changed case row once, then the events and deliveries in order."""
        opened = set(ledger.opened)
        if ledger.opened:
            await conn.execute(
                insert(cases),
                [{"number": n, **case_values(ledger.cases[n])} for n in ledger.opened],
            )
        changed = [n for n in ledger.changed if n not in opened]
        columns: set[str] = set()
        for n in changed:
            columns |= changed_columns(ledger.loaded[n], ledger.cases[n])
        updates = [{"n_": n, **case_values(ledger.cases[n], columns)} for n in changed]
        if updates and columns:
            await conn.execute(update(cases).where(cases.c.number == bindparam("n_")), updates)
        if ledger.events:
            await conn.execute(
                insert(case_events), [event_values(n, e, key) for n, e, key in ledger.events]
            )
        if ledger.deliveries:
            await conn.execute(
                insert(deliveries), [delivery_values(n, d, now) for n, d in ledger.deliveries]
            )
        touched = sorted(opened | set(changed) | {n for n, _, _ in ledger.events})
        if touched:
            await conn.execute(
                update(cases)
                .where(among(conn, cases.c.number, touched))
                .values(version=cases.c.version + 1)
            )

    async def _save(
        self,
        conn: AsyncConnection,
        number: int,
        case: Case,
        events: Sequence[CaseEvent],
    ) -> None:
        await conn.execute(
            update(cases)
            .where(cases.c.number == number)
            .values(**case_values(case), version=cases.c.version + 1)
        )
        if events:
            await conn.execute(insert(case_events), [event_values(number, e) for e in events])

    async def _get(self, conn: AsyncConnection, number: int) -> Case | None:
        row = (await conn.execute(select(cases).where(cases.c.number == number))).first()
        return case_from_row(row) if row is not None else None

    # --- people's actions ------------------------------------------------------------------

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
        number = parse_case_id(case_id)
        try:
            async with self._engine.begin() as conn:
                row = None
                if number is not None:
                    query = select(cases).where(cases.c.number == number)
                    if conn.dialect.name == "postgresql":
                        query = query.with_for_update()
                    row = (await conn.execute(query)).first()
                if row is None or case_from_row(row).id != case_id.strip().upper():
                    raise CaseNotFoundError(f"no case {case_id}")
                if assignee is not None and await self._get_user(conn, assignee) is None:
                    raise CaseNotFoundError(f"no user {assignee}")
                case, events = act(
                    case_from_row(row), action, actor=actor, now=now, assignee=assignee, text=text
                )
                await self._save(conn, row.number, case, events)
                return case
        except IntegrityError as exc:
            raise LifecycleError(
                f"cannot {action} {case_id}: another case is open for the same condition"
            ) from exc

    # --- queries -----------------------------------------------------------------------------

    async def list_cases(self, where: CaseFilter | None = None) -> list[Case]:
        query = select(cases).order_by(cases.c.opened_at, cases.c.number)
        w = where or CaseFilter()
        for column, wanted in (
            (cases.c.status, w.statuses),
            (cases.c.site, w.sites),
            (cases.c.condition, w.conditions),
            (cases.c.team, w.teams),
            (cases.c.assignee, w.assignees),
        ):
            if wanted is not None:
                query = query.where(column.in_(list(wanted)))
        async with self._engine.connect() as conn:
            return [case_from_row(r) for r in await conn.execute(query)]

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
        query = (
            select(case_events)
            .where(case_events.c.case_number == parse_case_id(case.id))
            .order_by(case_events.c.id)
        )
        async with self._engine.connect() as conn:
            return [event_from_row(case.id, r) for r in await conn.execute(query)]

    async def events_after(self, cursor: int, *, limit: int = 100) -> list[CaseEvent]:
        query = (
            select(case_events, cases.c.opened_at)
            .join(cases, cases.c.number == case_events.c.case_number)
            .where(case_events.c.id > cursor)
            .order_by(case_events.c.id)
            .limit(limit)
        )
        async with self._engine.connect() as conn:
            return [
                event_from_row(format_case_id(r.opened_at.year, r.case_number), r)
                for r in await conn.execute(query)
            ]

    async def latest_cursor(self) -> int:
        async with self._engine.connect() as conn:
            value = (await conn.execute(select(func.max(case_events.c.id)))).scalar_one()
        return int(value or 0)

    async def count_cases(self) -> int:
        async with self._engine.connect() as conn:
            return int((await conn.execute(select(func.count()).select_from(cases))).scalar_one())


class SqliteCaseStore(SqlCaseStore):
    """Cases in one SQLite file (WAL, foreign keys on): the embedded default."""

    def __init__(self, path: Path) -> None:
        self.path = path
        engine = create_async_engine(f"sqlite+aiosqlite:///{path}")
        _sqlite_pragmas(engine)
        super().__init__(engine, description=str(path))

    async def start(self) -> None:
        try:
            private_file(self.path)  # password hashes, tokens, access notes: owner only
            lock = self.path.with_name(self.path.name + ".migrate-lock").open("a")
        except OSError as exc:
            raise CaseStoreError(f"cannot create {self.path.parent}: {exc.strerror}") from exc
        with lock:
            # One migrator at a time, across processes and within one (flock is per open file).
            await asyncio.to_thread(fcntl.flock, lock, fcntl.LOCK_EX)
            try:
                await super().start()
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)


class MemoryCaseStore(SqliteCaseStore):
    """The in-package fake: a throwaway store for tests and replays, deleted on `aclose()`.

    It is the same code on a SQLite file in a private temporary directory rather than a
    `:memory:` database, because an in-memory database lives on one connection and the store
    runs concurrent transactions.
    """

    def __init__(self) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="husvakt-cases-")
        super().__init__(Path(self._tmp.name) / "cases.db")
        self.description = "memory"

    async def aclose(self) -> None:
        await super().aclose()
        self._tmp.cleanup()


def _sqlite_pragmas(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.close()


def open_store(config: CaseStoreConfig) -> SqlCaseStore:
    """The store a config names: its database `url`, else its SQLite file."""
    if config.url is not None:
        return SqlCaseStore.from_url(config.url)
    return SqliteCaseStore(config.sqlite)
