"""Seeded signal models: what a simulated sensor would measure at a given moment."""

from __future__ import annotations

import bisect
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

__all__ = ["Clock", "Glitch", "Profile", "Readout"]


class Clock(Protocol):
    """The time source a simulated device runs on (the demo passes an accelerated one)."""

    def now(self) -> datetime: ...

    async def sleep(self, seconds: float) -> None: ...


class Readout(Protocol):
    """What a device shows at a moment: a temperature, or a string for a fault it reports."""

    def value_at(self, when: datetime) -> float | str: ...


@dataclass(frozen=True)
class Glitch:
    """A raw value the device reports instead of the signal for `duration` from `at`
    (e.g. −127 from a DallasTemperature probe that came loose, or a garbage line)."""

    at: timedelta
    value: float | str
    duration: timedelta = timedelta(seconds=1)


@dataclass(frozen=True)
class Profile:
    """Piecewise-linear temperature over time since `start`, plus seeded Gaussian noise.

    The noise for a moment depends only on (seed, whole second), so two runs of a scenario see
    the same values at the same simulated times.
    """

    start: datetime
    points: Sequence[tuple[timedelta, float]]
    noise: float = 0.0
    seed: int = 0
    glitches: Sequence[Glitch] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        offsets = [p[0] for p in self.points]
        if not offsets or offsets != sorted(offsets):
            raise ValueError("profile points must be given in time order")

    def value_at(self, when: datetime) -> float | str:
        offset = when - self.start
        for glitch in self.glitches:
            if glitch.at <= offset < glitch.at + glitch.duration:
                return glitch.value
        return round(self.signal_at(offset) + self._noise(offset), 2)

    def signal_at(self, offset: timedelta) -> float:
        offsets = [p[0] for p in self.points]
        i = bisect.bisect_right(offsets, offset)
        if i == 0:
            return self.points[0][1]
        if i == len(self.points):
            return self.points[-1][1]
        (t0, v0), (t1, v1) = self.points[i - 1], self.points[i]
        share = (offset - t0) / (t1 - t0)
        return v0 + (v1 - v0) * share

    def _noise(self, offset: timedelta) -> float:
        if not self.noise:
            return 0.0
        second = int(offset.total_seconds())
        return random.Random(f"{self.seed}:{second}").gauss(0.0, self.noise)  # noqa: S311
