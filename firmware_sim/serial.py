"""A thermometer on a serial line: prints `name value` lines on a pseudo-terminal."""

from __future__ import annotations

import asyncio
import contextlib
import os
import tty
from collections.abc import Iterable

from firmware_sim import encode
from firmware_sim.play import Clock, play
from firmware_sim.scenario import Output

__all__ = ["SerialThermometer"]


class SerialThermometer:
    """Owns a pty pair; the gateway opens `path` as it would open /dev/ttyUSB0.

    Writes a scenario device's outputs as `NAME VALUE` lines as they come due (line noise
    as it comes); the run ends with the outputs.
    """

    def __init__(self, *, name: str, outputs: Iterable[Output], clock: Clock) -> None:
        self._name = name
        self._outputs = outputs
        self._clock = clock
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        os.set_blocking(self._master, False)
        self.path = os.ttyname(self._slave)
        self.lines = 0

    async def run(self) -> None:
        await play(self._outputs, self._clock, self._write)

    async def _write(self, output: Output) -> None:
        line = encode.serial_line(self._name, output)
        if line is None:
            return
        # A pty buffer holds kilobytes; when nobody reads, drop rather than block the loop.
        with contextlib.suppress(BlockingIOError):
            os.write(self._master, f"{line}\r\n".encode())
            self.lines += 1

    def close(self) -> None:
        for fd in (self._master, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)

    async def __aenter__(self) -> SerialThermometer:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        self.close()
        await asyncio.sleep(0)
