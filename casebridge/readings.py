"""Readings people see: kept in the case store (the site page's latest values, a meter's
consumption per day, `husvakt readings export`), and readings entered by hand, which reach the
rules from there.

`ReadingArchive` keeps a device's last good reading per sensor and minute, written in batches
off the rule path: a busy server keeps at most one row a sensor a minute, and a store that is
down delays the archive, never an alarm. `ManualReadings` hands the readings people entered to
the rules as readings of the `manual` gateway, numbered by their row in the store, and marks
them evaluated only after that: a crash in between evaluates them again, which the engine
recognises by their number.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from casebridge.store import CaseStore, KeptReading
from gateway.clock import Clock
from gateway.config import MANUAL_GATEWAY, ManualPoint, SensorConfig
from gateway.models import Reading

__all__ = ["ManualReadings", "ReadingArchive", "local_time", "manual_reading"]

log = logging.getLogger("husvakt.readings")

#: How far from now a reading by hand may be dated: not ahead (beyond a clock's skew), and
#: not further back than a year.
MAX_AHEAD = timedelta(minutes=5)
MAX_BACK = timedelta(days=366)
#: The largest magnitude a reading by hand may have (a meter's counter, in its unit).
MAX_VALUE = 1e15


class ReadingArchive:
    """A device's last good reading per sensor and minute, kept in the case store. At most
    `limit` minutes wait for the store; beyond that the oldest are dropped (and counted)."""

    def __init__(
        self,
        store: CaseStore,
        *,
        every: float = 10.0,
        limit: int = 200_000,
        keep: float | None = None,
    ) -> None:
        self._store = store
        self._every = every
        self._limit = limit
        self._keep = keep  # seconds a kept reading stays (None: for ever)
        self._pruned_at: datetime | None = None
        self._waiting: dict[tuple[str, str, int], Reading] = {}
        self.kept = 0
        self.dropped = 0

    def add(self, readings: Iterable[Reading]) -> None:
        waiting = self._waiting
        for r in readings:
            if r.quality != "good" or r.gateway == MANUAL_GATEWAY:
                continue  # a reading by hand is in the store already
            key = (r.site, r.sensor, int(r.ts.timestamp()) // 60)
            if key not in waiting and len(waiting) >= self._limit:
                del waiting[next(iter(waiting))]
                self.dropped += 1
            waiting[key] = r

    async def flush(self) -> int:
        """Write what waits; on failure it waits for the next flush (raises the error)."""
        if not self._waiting:
            return 0
        taken, self._waiting = self._waiting, {}
        rows = [
            KeptReading(r.site, r.sensor, r.kind, r.unit[:8], r.ts, r.value) for r in taken.values()
        ]
        try:
            await self._store.keep_readings(rows)
        except BaseException:
            self._waiting = {**taken, **self._waiting}  # newer readings win
            while len(self._waiting) > self._limit:
                del self._waiting[next(iter(self._waiting))]
                self.dropped += 1
            raise
        self.kept += len(rows)
        return len(rows)

    async def prune(self, now: datetime) -> int:
        """Forget readings older than `keep` (at most once an hour)."""
        if self._keep is None or (
            self._pruned_at is not None and now - self._pruned_at < timedelta(hours=1)
        ):
            return 0
        self._pruned_at = now
        return await self._store.forget_readings(now - timedelta(seconds=self._keep))

    async def run(self, clock: Clock, stop: asyncio.Event | None = None) -> None:
        """Flush every `every` seconds until `stop` (then once more); forget what is older
        than `keep` once an hour."""
        while stop is None or not stop.is_set():
            await clock.sleep(self._every)
            try:
                await self.flush()
                await self.prune(clock.now())
            except Exception:
                log.warning("keeping readings failed; they wait for the next try", exc_info=True)
        await self.flush()


def local_time(text: str, timezone: str) -> datetime:
    """A time as a person gives it: ISO 8601, a date or a date and time; without a zone, the
    site's `timezone`. Raises ValueError (also for a time no clock can hold in UTC)."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{text[:40]!r} is not an ISO 8601 date or time") from None
    value = value if value.tzinfo is not None else value.replace(tzinfo=ZoneInfo(timezone))
    try:
        value.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"{text[:40]!r} is out of range") from None
    return value


def manual_reading(
    sensors: Mapping[tuple[str, str], SensorConfig],
    *,
    site: str,
    sensor: str,
    value: float,
    at: datetime,
    actor: str,
    now: datetime,
) -> KeptReading:
    """A reading a person entered, checked: a sensor of `site` read by hand, a finite value of
    a sane size, a time neither ahead of now nor more than a year back. Raises ValueError."""
    config = sensors.get((site, sensor))
    if config is None:
        raise ValueError(f"site {site!r} has no sensor {sensor!r}")
    if not isinstance(config.source, ManualPoint):
        raise ValueError(f"sensor {sensor!r} is read by a device, not by hand")  # noqa: TRY004
    if not math.isfinite(value) or abs(value) > MAX_VALUE:
        raise ValueError(f"{value!r} is not a reading (a finite number up to {MAX_VALUE:g})")
    if config.unit == "bool" and value not in (0.0, 1.0):
        raise ValueError("an on/off sensor reads 0 (off) or 1 (on)")
    if at.tzinfo is None:
        raise ValueError("give the time with its zone (2026-12-04T08:00+01:00)")
    if at > now + MAX_AHEAD:
        raise ValueError(f"{at.isoformat()} is in the future")
    if at < now - MAX_BACK:
        raise ValueError(f"{at.isoformat()} is more than a year ago")
    return KeptReading(
        site=site,
        sensor=sensor,
        kind=config.kind,
        unit=config.unit,
        ts=at,
        value=float(value),
        source="manual",
        actor=actor[:128],
    )


class ManualReadings:
    """Hands the readings people entered to the rules (`hand`), in the order entered."""

    def __init__(
        self,
        store: CaseStore,
        hand: Callable[[list[Reading]], Awaitable[None]],
        *,
        every: float = 5.0,
    ) -> None:
        self._store = store
        self._hand = hand
        self._every = every
        self.evaluated = 0

    async def once(self) -> int:
        """Evaluate what waits; the number of readings."""
        rows = await self._store.pending_readings()
        if not rows:
            return 0
        readings = [
            Reading(
                site=r.site,
                gateway=MANUAL_GATEWAY,
                sensor=r.sensor,
                kind=r.kind,
                value=r.value,
                unit=r.unit,
                ts=r.ts,
                seq=r.id or 0,
            )
            for r in rows
        ]
        await self._hand(readings)
        await self._store.readings_evaluated([r.id for r in rows if r.id is not None])
        self.evaluated += len(readings)
        return len(readings)

    async def run(self, clock: Clock, stop: asyncio.Event | None = None) -> None:
        while stop is None or not stop.is_set():
            try:
                await self.once()
            except Exception:
                log.warning("evaluating readings entered by hand failed", exc_info=True)
            await clock.sleep(self._every)
