"""Serial source: reads lines from a serial port (USB adapter, RS-232, a pty in tests)."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Mapping, Sequence

import serial
import serial_asyncio_fast

from gateway.backoff import Backoff, reconnect_forever
from gateway.clock import Clock
from gateway.config import GatewayConfig, SerialPoint, SerialPortConfig
from gateway.normalize import Sample
from gateway.protocols import Refused
from gateway.protocols.serial import SerialCodec
from gateway.quarantine import Quarantine
from gateway.sources import Emit

__all__ = ["SerialSource", "serial_sources"]

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
        self._codec = SerialCodec(port.pattern, sensors)
        self._clock = clock
        self._quarantine = quarantine

    @property
    def name(self) -> str:
        return self._name

    async def run(self, emit: Emit) -> None:
        async def session(backoff: Backoff) -> None:
            reader, writer = await serial_asyncio_fast.open_serial_connection(
                url=self._port.path,
                baudrate=self._port.baudrate,
                bytesize=self._port.bytesize,
                parity=self._port.parity,
                stopbits=self._port.stopbits,
                limit=MAX_LINE,
            )
            log.info("%s: reading %s at %d baud", self._name, self._port.path, self._port.baudrate)
            backoff.reset()
            try:
                await self._read_lines(reader, emit)
            finally:
                writer.close()

        await reconnect_forever(
            session,
            errors=(serial.SerialException, OSError),
            what=f"{self._name}: {self._port.path}",
            log=log,
        )

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
        decoded = self._codec.decode(line)
        if decoded is None:
            return
        if isinstance(decoded, Refused):
            self._quarantine.add(
                decoded.reason, decoded.detail, source=self._name, raw=line.encode()
            )
            return
        await emit([Sample.of(decoded, self._clock.now())])


def serial_sources(
    config: GatewayConfig,
    sensors: Sequence[tuple[str, SerialPoint]],
    *,
    clock: Clock,
    quarantine: Quarantine,
) -> list[SerialSource]:
    """One source per port; a sensor is known on its port by its `name` (default: its id),
    or, on a port whose pattern has no `sensor` group, is the port's only sensor."""
    ports: dict[str, dict[str, str]] = {}
    for sensor_id, point in sensors:
        name = point.name if point.name is not None else sensor_id
        shared = "sensor" in re.compile(config.serial_ports[point.port].pattern).groupindex
        ports.setdefault(point.port, {})[name if shared else ""] = sensor_id
    return [
        SerialSource(
            name=f"serial:{port_id}",
            port=config.serial_ports[port_id],
            sensors=mapping,
            clock=clock,
            quarantine=quarantine,
        )
        for port_id, mapping in ports.items()
    ]
