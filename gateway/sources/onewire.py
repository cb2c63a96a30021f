"""1-Wire source: DS18B20 probes on the Pi's GPIO bus, read from Linux sysfs (w1_therm)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

from gateway.clock import Clock
from gateway.decode import parse_w1_slave
from gateway.errors import DecodeError
from gateway.normalize import Sample
from gateway.sources import Emit

__all__ = ["OneWireSource"]

log = logging.getLogger("husvakt.gateway.onewire")


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii", errors="replace")
    except FileNotFoundError:
        return None


class OneWireSource:
    """Every `poll_interval` reads each probe's `w1_slave` file off the event loop (the kernel
    performs the 750 ms conversion during the read). A vanished device directory is the fault
    `sensor-lost`; CRC failures, the all-zero scratchpad, the power-on 85 °C and the 127.94 °C
    brown-out value are faults too."""

    def __init__(
        self, *, base: Path, points: Sequence[tuple[str, str]], poll_interval: float, clock: Clock
    ) -> None:
        self._base = base
        self._points = tuple(points)
        self._interval = timedelta(seconds=poll_interval)
        self._clock = clock

    @property
    def name(self) -> str:
        return f"onewire:{self._base}"

    async def run(self, emit: Emit) -> None:
        due = self._clock.now()
        while True:
            for sensor, device in self._points:
                text = await asyncio.to_thread(_read, self._base / device / "w1_slave")
                ts = self._clock.now()
                if text is None:
                    await emit(Sample(sensor=sensor, ts=ts, fault="sensor-lost"))
                    continue
                try:
                    value = parse_w1_slave(text)
                except DecodeError as exc:
                    await emit(Sample(sensor=sensor, ts=ts, fault=exc.reason))
                else:
                    await emit(Sample(sensor=sensor, ts=ts, value=value))
            due += self._interval
            now = self._clock.now()
            if due < now:
                due += ((now - due) // self._interval + 1) * self._interval
            await self._clock.sleep((due - now).total_seconds())
