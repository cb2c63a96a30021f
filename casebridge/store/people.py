"""The case store's people: users, API tokens, web sessions and sign-in failures."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    delete,
    insert,
    select,
    update,
)
from sqlalchemy.exc import (
    IntegrityError,
    InterfaceError,
    OperationalError,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from casebridge.errors import (
    CaseNotFoundError,
    StoreUnavailableError,
)
from casebridge.models import (
    User,
)
from casebridge.store.rows import (
    RACE_RETRIES,
    user_from_row,
)
from casebridge.store.schema import (
    sessions,
    sign_in_failures,
    tokens,
    users,
)

__all__ = ["SESSION_TOUCH", "PeopleQueries"]

#: How stale a session's last-seen time may get before a request writes it again (seconds).
SESSION_TOUCH = 60.0


class PeopleQueries:
    """Users, tokens, sessions and sign-in failures (a part of `SqlCaseStore`)."""

    _engine: AsyncEngine

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
        return user_from_row(row) if row else None

    async def get_user(self, user_id: str) -> User | None:
        try:
            async with self._engine.connect() as conn:
                return await self._get_user(conn, user_id)
        except (OperationalError, InterfaceError, OSError) as exc:
            raise StoreUnavailableError(f"the case store is unavailable: {exc}") from exc

    async def list_users(self) -> list[User]:
        async with self._engine.connect() as conn:
            rows = await conn.execute(select(users).order_by(users.c.id))
            return [user_from_row(r) for r in rows]

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
        return user_from_row(row)

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
        return user_from_row(row)

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
