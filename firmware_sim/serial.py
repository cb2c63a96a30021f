"""A thermometer on a serial line: prints `name value` lines on a pseudo-terminal."""

from __future__ import annotations

import asyncio
import contextlib
import os
import tty

from firmware_sim.signal import Clock, Profile

__all__ = ["SerialThermometer"]


class SerialThermometer:
    """Owns a pty pair; the gateway opens `path` as it would open /dev/ttyUSB0.

    Writes a line every `interval` simulated seconds. A glitch that is a string is printed as
    is (line noise); a numeric glitch replaces the value.
    """

    def __init__(
        self, *, name: str, profile: Profile, clock: Clock, interval: float = 60.0
    ) -> None:
        self._name = name
        self._profile = profile
        self._clock = clock
        self._interval = interval
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        self.path = os.ttyname(self._slave)
        self.lines = 0

    async def run(self) -> None:
        while True:
            value = self._profile.value_at(self._clock.now())
            line = f"{self._name} {value:.2f}" if isinstance(value, float) else value
            # A pty buffer holds kilobytes; when nobody reads, drop rather than block the loop.
            with contextlib.suppress(BlockingIOError):
                os.set_blocking(self._master, False)
                os.write(self._master, f"{line}\r\n".encode())
                self.lines += 1
            await self._clock.sleep(self._interval)

    def close(self) -> None:
        for fd in (self._master, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)

    async def __aenter__(self) -> SerialThermometer:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        self.close()
        await asyncio.sleep(0)
