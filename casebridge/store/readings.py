"""The case store's readings: what the site page shows, the meter charts count and `husvakt
readings export` writes — a device's last reading per sensor and minute, and every reading a
person entered by hand, which waits (`pending`) until the rules have evaluated it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import and_, delete, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from casebridge.errors import CaseBridgeError
from casebridge.store.schema import readings

__all__ = ["DuplicateReadingError", "KeptReading", "ReadingQueries"]


class DuplicateReadingError(CaseBridgeError):
    """A reading by hand of a sensor at a time it already has one."""


@dataclass(frozen=True, slots=True)
class KeptReading:
    site: str
    sensor: str
    kind: str
    unit: str
    ts: datetime
    value: float
    source: Literal["device", "manual"] = "device"
    actor: str | None = None
    id: int | None = None


def _kept(r: Any) -> KeptReading:
    return KeptReading(
        site=r.site,
        sensor=r.sensor,
        kind=r.kind,
        unit=r.unit,
        ts=r.ts,
        value=r.value,
        source=r.source,
        actor=r.actor,
        id=r.id,
    )


def _values(r: KeptReading, *, pending: bool = False) -> dict[str, object]:
    return {
        "site": r.site,
        "sensor": r.sensor,
        "kind": r.kind,
        "unit": r.unit,
        "ts": r.ts,
        "value": r.value,
        "source": r.source,
        "actor": r.actor,
        "pending": pending,
    }


class ReadingQueries:
    """Readings (a part of `SqlCaseStore`)."""

    _engine: AsyncEngine

    async def keep_readings(self, rows: Sequence[KeptReading]) -> None:
        """Keep device readings; one the store already has (a batch sent again) is skipped."""
        if not rows:
            return
        async with self._engine.begin() as conn:
            await conn.execute(_insert_new(conn), [_values(r) for r in rows])

    async def add_manual_reading(self, reading: KeptReading) -> KeptReading:
        """A reading a person entered: kept, and pending until the rules evaluated it."""
        manual = replace(reading, source="manual", id=None)
        try:
            async with self._engine.begin() as conn:
                result = await conn.execute(insert(readings), [_values(manual, pending=True)])
        except IntegrityError as exc:
            raise DuplicateReadingError(
                f"{reading.site}/{reading.sensor} already has a reading by hand at "
                f"{reading.ts.isoformat()}"
            ) from exc
        key = result.inserted_primary_key
        return replace(manual, id=None if key is None else int(key[0]))

    async def pending_readings(self, *, limit: int = 500) -> list[KeptReading]:
        """Readings by hand the rules have not evaluated yet, in the order entered."""
        query = select(readings).where(readings.c.pending).order_by(readings.c.id).limit(limit)
        async with self._engine.connect() as conn:
            return [_kept(r) for r in await conn.execute(query)]

    async def readings_evaluated(self, ids: Sequence[int]) -> None:
        if ids:
            async with self._engine.begin() as conn:
                await conn.execute(
                    update(readings).where(readings.c.id.in_(list(ids))).values(pending=False)
                )

    async def latest_readings(self, site: str) -> dict[str, KeptReading]:
        """Each sensor's newest kept reading at `site`."""
        newest = (
            select(readings.c.sensor, func.max(readings.c.ts).label("ts"))
            .where(readings.c.site == site)
            .group_by(readings.c.sensor)
            .subquery()
        )
        query = (
            select(readings)
            .join(newest, and_(readings.c.sensor == newest.c.sensor, readings.c.ts == newest.c.ts))
            .where(readings.c.site == site)
            .order_by(readings.c.sensor, readings.c.id)
        )
        async with self._engine.connect() as conn:
            return {r.sensor: _kept(r) for r in await conn.execute(query)}

    async def forget_readings(self, before: datetime) -> int:
        """Delete kept readings taken before `before` (not those the rules still wait for)."""
        async with self._engine.begin() as conn:
            result = await conn.execute(
                delete(readings).where(readings.c.ts < before, readings.c.pending.is_(False))
            )
        return int(result.rowcount or 0)

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
        query = select(readings).where(
            readings.c.site == site, readings.c.ts >= start, readings.c.ts < end
        )
        if sensors is not None:
            query = query.where(readings.c.sensor.in_(list(sensors)))
        query = query.order_by(readings.c.sensor, readings.c.ts, readings.c.id).limit(limit)
        async with self._engine.connect() as conn:
            return [_kept(r) for r in await conn.execute(query)]


def _insert_new(conn: AsyncConnection) -> Any:
    """An insert that skips a row the store already has (same sensor, time and source)."""
    dialect = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    return dialect(readings).on_conflict_do_nothing(
        index_elements=["site", "sensor", "ts", "source"]
    )
