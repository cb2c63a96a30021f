"""Time as a seam: the real clock in production, an accelerated one for demos and tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Protocol

__all__ = ["Clock", "ScaledClock", "SystemClock", "every"]


class Clock(Protocol):
    """What every time-dependent part asks: what time is it, and wait this long."""

    def now(self) -> datetime: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """Wall-clock time in UTC."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class ScaledClock:
    """Time that starts at `start` and runs `speed` times faster than the wall clock.

    The demo replays an eight-hour night in seconds with this; every part (simulated devices,
    poll schedules, rule hold times) sees the same accelerated time.
    """

    def __init__(self, *, start: datetime, speed: float) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self._start = start.astimezone(UTC)
        self._speed = speed
        self._origin = time.monotonic()

    @property
    def speed(self) -> float:
        return self._speed

    def now(self) -> datetime:
        return self._start + timedelta(seconds=(time.monotonic() - self._origin) * self._speed)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds) / self._speed)

    async def sleep_until(self, when: datetime) -> None:
        await self.sleep((when - self.now()).total_seconds())


async def every(clock: Clock, interval: timedelta) -> AsyncIterator[int]:
    """Fixed-rate cycles (0, 1, 2, …) on `clock`, for the polling sources: a slow cycle does
    not shift the next one, and one that overran (a long outage) skips the slots it missed and
    keeps the phase. The first cycle starts at once."""
    due = clock.now()
    cycle = 0
    while True:
        yield cycle
        cycle += 1
        due += interval
        now = clock.now()
        if due < now:
            due += ((now - due) // interval + 1) * interval
        await clock.sleep((due - now).total_seconds())
