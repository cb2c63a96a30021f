"""Serial source: reads lines from a serial port (USB adapter, RS-232, a pty in tests)."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Mapping

import serial
import serial_asyncio_fast

from gateway.backoff import Backoff
from gateway.clock import Clock
from gateway.config import SerialPortConfig
from gateway.decode import parse_line
from gateway.errors import DecodeError
from gateway.normalize import Sample
from gateway.quarantine import Quarantine
from gateway.sources import Emit

__all__ = ["SerialSource"]

log = logging.getLogger("husvakt.gateway.serial")

MAX_LINE = 4096


class SerialSource:
    """One serial port. `sensors` maps the pattern's `sensor` text to a sensor id; a port whose
    pattern has no `sensor` group carries exactly one sensor (mapped from the empty string)."""

    def __init__(
        self,
        *,
        name: str,
        port: SerialPortConfig,
        sensors: Mapping[str, str],
        clock: Clock,
        quarantine: Quarantine,
    ) -> None:
        self._name = name
        self._port = port
        self._pattern = re.compile(port.pattern)
        self._sensors = dict(sensors)
        self._clock = clock
        self._quarantine = quarantine

    @property
    def name(self) -> str:
        return self._name

    async def run(self, emit: Emit) -> None:
        backoff = Backoff()
        while True:
            try:
                reader, writer = await serial_asyncio_fast.open_serial_connection(
                    url=self._port.path,
                    baudrate=self._port.baudrate,
                    bytesize=self._port.bytesize,
                    parity=self._port.parity,
                    stopbits=self._port.stopbits,
                    limit=MAX_LINE,
                )
            except (serial.SerialException, OSError) as exc:
                delay = backoff.next_delay()
                log.warning(
                    "%s: cannot open %s (%s); retrying in %.1fs",
                    self._name,
                    self._port.path,
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)
                continue
            log.info("%s: reading %s at %d baud", self._name, self._port.path, self._port.baudrate)
            backoff.reset()
            try:
                await self._read_lines(reader, emit)
            except (serial.SerialException, OSError) as exc:
                log.warning("%s: %s went away (%s)", self._name, self._port.path, exc)
            finally:
                writer.close()
            await asyncio.sleep(backoff.next_delay())

    async def _read_lines(self, reader: asyncio.StreamReader, emit: Emit) -> None:
        while True:
            try:
                raw = await reader.readuntil(b"\n")
            except asyncio.IncompleteReadError:
                return  # port closed
            except asyncio.LimitOverrunError as exc:
                await reader.readexactly(exc.consumed)
                self._quarantine.add(
                    "serial-line-too-long", f"more than {MAX_LINE} bytes", source=self._name
                )
                continue
            line = raw.decode("utf-8", errors="replace").strip()
            try:
                await self._handle(line, emit)
            except Exception as exc:  # one line never stops the port
                log.exception("%s: handling a line failed", self._name)
                self._quarantine.add(
                    "serial-failed", f"{type(exc).__name__}: {exc}", source=self._name, raw=raw
                )

    async def _handle(self, line: str, emit: Emit) -> None:
        if not line:
            return
        ts = self._clock.now()
        single = self._sensors.get("") if "sensor" not in self._pattern.groupindex else None
        try:
            name, value = parse_line(line, self._pattern)
        except DecodeError as exc:
            named = self._sensors.get(exc.sensor) if exc.sensor is not None else None
            sensor = single if single is not None else named
            if sensor is not None:
                await emit(Sample(sensor=sensor, ts=ts, fault=exc.reason))
            else:
                self._quarantine.add(
                    "serial-unparsable", str(exc), source=self._name, raw=line.encode()
                )
            return
        sensor = single if name is None else self._sensors.get(name)
        if sensor is None:
            self._quarantine.add(
                "serial-unknown-sensor", f"{name!r}", source=self._name, raw=line.encode()
            )
            return
        await emit(Sample(sensor=sensor, ts=ts, value=value))
