"""1-Wire source: DS18B20 probes on the Pi's GPIO bus, read from Linux sysfs (w1_therm)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

from gateway.clock import Clock, every
from gateway.config import GatewayConfig, OneWirePoint
from gateway.normalize import Sample
from gateway.protocols.onewire import decode_w1
from gateway.quarantine import Quarantine
from gateway.sources import Emit

__all__ = ["OneWireSource", "onewire_sources"]

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
        async for _ in every(self._clock, self._interval):
            for sensor, device in self._points:
                text = await asyncio.to_thread(_read, self._base / device / "w1_slave")
                await emit([Sample.of(decode_w1(sensor, text), self._clock.now())])


def onewire_sources(
    config: GatewayConfig,
    sensors: Sequence[tuple[str, OneWirePoint]],
    *,
    clock: Clock,
    quarantine: Quarantine,
) -> list[OneWireSource]:
    """One source for the bus, when any sensor is on it."""
    if not sensors:
        return []
    points = [(sensor_id, point.device) for sensor_id, point in sensors]
    onewire = config.onewire
    return [
        OneWireSource(
            base=onewire.base, points=points, poll_interval=onewire.poll_interval, clock=clock
        )
    ]
