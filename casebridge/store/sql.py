"""The SQL case store (SQLAlchemy 2, async): SQLite (aiosqlite) or PostgreSQL (asyncpg).

"One open case per (site, sensor, condition)" is enforced by the database itself, with a
partial unique index over open cases, so two writers raising the same alarm at the same moment
still make one case: the loser of the race gets an integrity error and appends instead. The
schema is managed by Alembic migrations, applied by `start()`.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import random
import tempfile
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import (
    ARRAY,
    ColumnElement,
    Connection,
    Select,
    String,
    and_,
    any_,
    bindparam,
    delete,
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
    UNACKNOWLEDGED,
    Action,
    Case,
    CaseDraft,
    CaseEvent,
    Delivery,
    DeliveryDraft,
    OpenPlan,
    User,
    format_case_id,
    parse_case_id,
)
from casebridge.store import AlarmEntry, CaseFilter, Outcome
from casebridge.store.schema import (
    case_events,
    cases,
    deliveries,
    metadata,
    open_case,
    sessions,
    sign_in_failures,
    tokens,
    users,
)
from gateway.secrets import private_file
from stream.models import Alarm

__all__ = ["MIGRATIONS", "MemoryCaseStore", "SqlCaseStore", "SqliteCaseStore", "open_store"]

log = logging.getLogger("husvakt.casebridge.store")

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
MAX_DELIVERY_ATTEMPTS = 8
RACE_RETRIES = 8
#: How stale a session's last-seen time may get before a request writes it again (seconds).
SESSION_TOUCH = 60.0
#: Alarms recorded in one transaction (a bigger batch is split).
MAX_BATCH = 500


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
        assignee=row.assignee,
        acknowledged_at=row.acknowledged_at,
        resolved_at=row.resolved_at,
        closed_at=row.closed_at,
        escalation_level=row.escalation_level,
        next_escalation_at=row.next_escalation_at,
    )


def _changed_columns(before: Case, after: Case) -> set[str]:
    """The columns of `cases` that differ between two states of one case."""
    fields = {f for f in Case.model_fields if getattr(before, f) != getattr(after, f)} - {"id"}
    return fields | {"team", "priority"} if "draft" in fields else fields


def _case_values(case: Case, columns: set[str] | None = None) -> dict[str, Any]:
    """A case as the row's values (only `columns`, when given)."""
    if columns is not None:
        row = {c: getattr(case, c) for c in columns if c not in ("draft", "team", "priority")}
        if "draft" in columns:
            row |= {
                "draft": case.draft.model_dump(mode="json"),
                "team": case.draft.team,
                "priority": case.draft.priority,
            }
        return row
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
        "assignee": case.assignee,
        "acknowledged_at": case.acknowledged_at,
        "resolved_at": case.resolved_at,
        "closed_at": case.closed_at,
        "escalation_level": case.escalation_level,
        "next_escalation_at": case.next_escalation_at,
    }


#: PostgreSQL's "deadlock detected" and "could not serialize": the transaction may be retried.
RETRYABLE_SQLSTATES = frozenset({"40P01", "40001"})


def _raced(exc: Exception) -> bool:
    """Whether `exc` means another writer got there first (retry reads its commit)."""
    if isinstance(exc, IntegrityError):
        return True
    return getattr(getattr(exc, "orig", None), "sqlstate", None) in RETRYABLE_SQLSTATES


def _among(conn: AsyncConnection, column: ColumnElement[Any], values: list[Any]) -> Any:
    """`column IN values` with the list as one bound value (an array on PostgreSQL, JSON on
    SQLite): one statement whatever the list's length, instead of a parameter per value."""
    if conn.dialect.name == "postgresql":
        return column == any_(bindparam(None, values, type_=ARRAY(column.type)))
    each = func.json_each(bindparam(None, json.dumps(values), type_=String)).table_valued("value")
    return column.in_(select(each.c.value))


def _for_update(conn: AsyncConnection, query: Select[Any]) -> Select[Any]:
    """On PostgreSQL, lock the rows read (in the query's order, so two writers cannot deadlock
    over them) until the transaction ends: a concurrent writer waits, then reads the commit."""
    return query.with_for_update() if conn.dialect.name == "postgresql" else query


def _delivery_values(number: int, d: DeliveryDraft, now: datetime) -> dict[str, Any]:
    return {
        "case_number": number,
        "channel": d.channel,
        "recipient": d.recipient,
        "subject": d.subject,
        "body": d.body,
        "reason": d.reason,
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
    }


def _migrate(connection: Connection) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


class SqlCaseStore:
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
                if attempt == RACE_RETRIES or not _raced(exc):
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
                    _among(conn, case_events.c.alarm_key, keys)
                )
            )
        }
        newest = (
            select(func.max(cases.c.number))
            .where(_among(conn, cases.c.sensor, sensors))
            .group_by(cases.c.site, cases.c.sensor, cases.c.condition)
        )
        # the cases of the batch's sensors (of any site; more than needed, in one statement)
        rows = list(
            await conn.execute(
                _for_update(
                    conn,
                    select(cases)
                    .where(
                        or_(
                            and_(_among(conn, cases.c.sensor, sensors), open_case),
                            cases.c.number.in_(newest.scalar_subquery()),
                            _among(conn, cases.c.number, list(set(seen.values()))),
                        )
                    )
                    .order_by(cases.c.number),
                )
            )
        )
        top = (await conn.execute(select(func.max(cases.c.number)))).scalar()
        loaded = {r.number: _case_from_row(r) for r in rows}
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
                [{"number": n, **_case_values(ledger.cases[n])} for n in ledger.opened],
            )
        changed = [n for n in ledger.changed if n not in opened]
        columns: set[str] = set()
        for n in changed:
            columns |= _changed_columns(ledger.loaded[n], ledger.cases[n])
        updates = [{"n_": n, **_case_values(ledger.cases[n], columns)} for n in changed]
        if updates and columns:
            await conn.execute(update(cases).where(cases.c.number == bindparam("n_")), updates)
        if ledger.events:
            await conn.execute(
                insert(case_events),
                [
                    {
                        "case_number": n,
                        "at": e.at,
                        "kind": e.kind,
                        "actor": e.actor,
                        "text": e.text,
                        "alarm_key": key,
                    }
                    for n, e, key in ledger.events
                ],
            )
        if ledger.deliveries:
            await conn.execute(
                insert(deliveries), [_delivery_values(n, d, now) for n, d in ledger.deliveries]
            )

    async def _save(
        self,
        conn: AsyncConnection,
        number: int,
        case: Case,
        events: Sequence[CaseEvent],
    ) -> None:
        await conn.execute(
            update(cases).where(cases.c.number == number).values(**_case_values(case))
        )
        if events:
            await conn.execute(
                insert(case_events),
                [
                    {
                        "case_number": number,
                        "at": e.at,
                        "kind": e.kind,
                        "actor": e.actor,
                        "text": e.text,
                        "alarm_key": None,
                    }
                    for e in events
                ],
            )

    @staticmethod
    async def _queue(
        conn: AsyncConnection, number: int, drafts: Sequence[DeliveryDraft], now: datetime
    ) -> None:
        if drafts:
            await conn.execute(
                insert(deliveries), [_delivery_values(number, d, now) for d in drafts]
            )

    async def _get(self, conn: AsyncConnection, number: int) -> Case | None:
        row = (await conn.execute(select(cases).where(cases.c.number == number))).first()
        return _case_from_row(row) if row is not None else None

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
                if row is None or _case_from_row(row).id != case_id.strip().upper():
                    raise CaseNotFoundError(f"no case {case_id}")
                if assignee is not None and await self._get_user(conn, assignee) is None:
                    raise CaseNotFoundError(f"no user {assignee}")
                case, events = act(
                    _case_from_row(row), action, actor=actor, now=now, assignee=assignee, text=text
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
        query = (
            select(case_events)
            .where(case_events.c.case_number == parse_case_id(case.id))
            .order_by(case_events.c.id)
        )
        async with self._engine.connect() as conn:
            return [self._event(case.id, r) for r in await conn.execute(query)]

    @staticmethod
    def _event(case_id: str, r: Any) -> CaseEvent:
        return CaseEvent(
            case_id=case_id, at=r.at, kind=r.kind, actor=r.actor, text=r.text, cursor=r.id
        )

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
                self._event(format_case_id(r.opened_at.year, r.case_number), r)
                for r in await conn.execute(query)
            ]

    async def latest_cursor(self) -> int:
        async with self._engine.connect() as conn:
            value = (await conn.execute(select(func.max(case_events.c.id)))).scalar_one()
        return int(value or 0)

    # --- users -------------------------------------------------------------------------------

    async def add_user(self, user: User, *, now: datetime) -> None:
        values = {
            "name": user.name,
            "email": user.email,
            "role": user.role,
            "language": user.language,
        }
        async with self._engine.begin() as conn:
            if await self._get_user(conn, user.id) is None:
                await conn.execute(insert(users).values(id=user.id, created_at=now, **values))
            else:
                await conn.execute(update(users).where(users.c.id == user.id).values(**values))

    @staticmethod
    async def _get_user(conn: AsyncConnection, user_id: str) -> User | None:
        row = (await conn.execute(select(users).where(users.c.id == user_id))).first()
        return _user(row) if row else None

    async def get_user(self, user_id: str) -> User | None:
        try:
            async with self._engine.connect() as conn:
                return await self._get_user(conn, user_id)
        except (OperationalError, InterfaceError, OSError) as exc:
            raise StoreUnavailableError(f"the case store is unavailable: {exc}") from exc

    async def list_users(self) -> list[User]:
        async with self._engine.connect() as conn:
            rows = await conn.execute(select(users).order_by(users.c.id))
            return [_user(r) for r in rows]

    async def add_token(
        self,
        user_id: str,
        token_hash: str,
        *,
        label: str,
        now: datetime,
        expires_at: datetime | None = None,
    ) -> None:
        await self._insert_for_user(
            tokens,
            user_id,
            token_hash=token_hash,
            label=label,
            created_at=now,
            expires_at=expires_at,
        )

    async def _insert_for_user(self, table: Any, user_id: str, **values: object) -> None:
        """Insert a row that belongs to `user_id` (CaseNotFoundError when there is no such user)."""
        async with self._engine.begin() as conn:
            if await self._get_user(conn, user_id) is None:
                raise CaseNotFoundError(f"no user {user_id}")
            await conn.execute(insert(table).values(user_id=user_id, **values))

    async def user_for_token(self, token_hash: str, *, now: datetime | None = None) -> User | None:
        query = (
            select(users, tokens.c.expires_at.label("token_expires_at"))
            .join(tokens, tokens.c.user_id == users.c.id)
            .where(tokens.c.token_hash == token_hash)
        )
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            return None
        expires = row.token_expires_at
        if expires is not None and (now is None or now >= expires):
            return None
        return _user(row)

    async def delete_token(self, token_hash: str) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(delete(tokens).where(tokens.c.token_hash == token_hash))

    async def add_session(
        self, user_id: str, session_hash: str, *, now: datetime, expires_at: datetime
    ) -> None:
        await self._insert_for_user(
            sessions,
            user_id,
            session_hash=session_hash,
            created_at=now,
            last_seen_at=now,
            expires_at=expires_at,
        )

    async def user_for_session(
        self, session_hash: str, *, now: datetime, idle: float
    ) -> User | None:
        query = (
            select(
                users,
                sessions.c.last_seen_at.label("seen"),
                sessions.c.expires_at.label("session_expires_at"),
            )
            .join(sessions, sessions.c.user_id == users.c.id)
            .where(sessions.c.session_hash == session_hash)
        )
        async with self._engine.begin() as conn:
            row = (await conn.execute(query)).first()
            if row is None:
                return None
            where = sessions.c.session_hash == session_hash
            if now >= row.session_expires_at or (now - row.seen).total_seconds() > idle:
                await conn.execute(delete(sessions).where(where))
                return None
            if (now - row.seen).total_seconds() >= SESSION_TOUCH:
                await conn.execute(update(sessions).where(where).values(last_seen_at=now))
        return _user(row)

    async def sign_in_failures(self, keys: Sequence[str]) -> dict[str, tuple[int, datetime]]:
        async with self._engine.connect() as conn:
            rows = await conn.execute(
                select(sign_in_failures).where(sign_in_failures.c.key.in_(list(keys)))
            )
            return {r.key: (int(r[1]), r.last_at) for r in rows}

    async def sign_in_failed(self, keys: Sequence[str], *, now: datetime, forget: float) -> None:
        """Count a failed sign-in under each key (atomically: `count = count + 1` in the
        database), and forget keys with no failure for `forget` seconds."""
        table = sign_in_failures
        for _ in range(RACE_RETRIES):
            try:
                async with self._engine.begin() as conn:
                    await conn.execute(
                        delete(table).where(table.c.last_at < now - timedelta(seconds=forget))
                    )
                    for key in keys:
                        done = await conn.execute(
                            update(table)
                            .where(table.c.key == key)
                            .values(count=table.c.count + 1, last_at=now)
                        )
                        if done.rowcount == 0:
                            await conn.execute(insert(table).values(key=key, count=1, last_at=now))
            except IntegrityError:
                continue  # another attempt inserted the same key first: count on its row
            else:
                return

    async def sign_in_succeeded(self, key: str) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(delete(sign_in_failures).where(sign_in_failures.c.key == key))

    async def end_session(self, session_hash: str) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(delete(sessions).where(sessions.c.session_hash == session_hash))

    async def revoke(
        self, user_id: str, *, sessions_too: bool = True, tokens_too: bool = True
    ) -> tuple[int, int]:
        """End the user's web sessions and/or delete their API tokens: (sessions, tokens)."""
        async with self._engine.begin() as conn:
            if await self._get_user(conn, user_id) is None:
                raise CaseNotFoundError(f"no user {user_id}")
            ended = deleted = 0
            if sessions_too:
                done = await conn.execute(delete(sessions).where(sessions.c.user_id == user_id))
                ended = done.rowcount
            if tokens_too:
                done = await conn.execute(delete(tokens).where(tokens.c.user_id == user_id))
                deleted = done.rowcount
        return ended, deleted

    async def set_password(self, user_id: str, password_hash: str) -> None:
        """Set the password and end every web session of the user (whoever knew the old one is
        signed out)."""
        async with self._engine.begin() as conn:
            done = await conn.execute(
                update(users).where(users.c.id == user_id).values(password_hash=password_hash)
            )
            if done.rowcount == 0:
                raise CaseNotFoundError(f"no user {user_id}")
            await conn.execute(delete(sessions).where(sessions.c.user_id == user_id))

    async def password_hash(self, user_id: str) -> str | None:
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(select(users.c.password_hash).where(users.c.id == user_id))
            ).first()
        return row.password_hash if row else None

    # --- notifications and escalation ------------------------------------------------------

    async def due_deliveries(self, now: datetime, *, limit: int = 50) -> list[Delivery]:
        query = (
            select(deliveries, cases.c.opened_at)
            .join(cases, cases.c.number == deliveries.c.case_number)
            .where(deliveries.c.status == "pending", deliveries.c.next_attempt_at <= now)
            .order_by(deliveries.c.next_attempt_at, deliveries.c.id)
            .limit(limit)
        )
        async with self._engine.connect() as conn:
            return [
                Delivery(
                    id=r.id,
                    case_id=format_case_id(r.opened_at.year, r.case_number),
                    channel=r.channel,
                    recipient=r.recipient,
                    subject=r.subject,
                    body=r.body,
                    reason=r.reason,
                    status=r.status,
                    attempts=r.attempts,
                    next_attempt_at=r.next_attempt_at,
                )
                for r in await conn.execute(query)
            ]

    async def delivery_result(
        self, delivery: Delivery, *, error: str | None, now: datetime, retry_at: datetime | None
    ) -> None:
        attempts = delivery.attempts + 1
        if error is None:
            status, kind, text = (
                "sent",
                "notification_sent",
                f"{delivery.channel} sent to {delivery.recipient}",
            )
        elif retry_at is not None and attempts < MAX_DELIVERY_ATTEMPTS:
            status, kind = "pending", "notification_failed"
            text = f"{delivery.channel} to {delivery.recipient} failed ({error}); retrying"
        else:
            status, kind = "failed", "notification_failed"
            text = f"{delivery.channel} to {delivery.recipient} failed ({error}); gave up"
        number = parse_case_id(delivery.case_id)
        assert number is not None, "deliveries carry well-formed case ids"
        async with self._engine.begin() as conn:
            changed = await conn.execute(
                update(deliveries)
                .where(deliveries.c.id == delivery.id, deliveries.c.attempts == delivery.attempts)
                .values(
                    status=status,
                    attempts=attempts,
                    last_error=error,
                    next_attempt_at=retry_at or now,
                )
            )
            if changed.rowcount == 1:
                await conn.execute(
                    insert(case_events).values(
                        case_number=number, at=now, kind=kind, actor="husvakt", text=text
                    )
                )

    async def due_escalations(self, now: datetime, *, limit: int = 50) -> list[Case]:
        query = (
            select(cases)
            .where(cases.c.status.in_(UNACKNOWLEDGED), cases.c.next_escalation_at <= now)
            .order_by(cases.c.next_escalation_at)
            .limit(limit)
        )
        async with self._engine.connect() as conn:
            return [_case_from_row(r) for r in await conn.execute(query)]

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
        number = parse_case_id(case_id)
        async with self._engine.begin() as conn:
            changed = await conn.execute(
                update(cases)
                .where(
                    cases.c.number == number,
                    cases.c.status.in_(UNACKNOWLEDGED),
                    cases.c.escalation_level == level - 1,
                )
                .values(escalation_level=level, next_escalation_at=next_at, updated_at=now)
            )
            if changed.rowcount != 1:
                return False
            assert number is not None
            await conn.execute(
                insert(case_events).values(
                    case_number=number, at=now, kind="escalated", actor="husvakt", text=text
                )
            )
            await self._queue(conn, number, deliveries, now)
            return True

    async def count_cases(self) -> int:
        async with self._engine.connect() as conn:
            return int((await conn.execute(select(func.count()).select_from(cases))).scalar_one())


def _user(row: Any) -> User:
    return User(id=row.id, name=row.name, email=row.email, role=row.role, language=row.language)


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
