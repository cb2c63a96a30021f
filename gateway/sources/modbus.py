"""Modbus TCP source: polls one device's registers on a fixed schedule."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timedelta

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException
from pymodbus.pdu import ExceptionResponse

from gateway.clock import Clock
from gateway.config import ModbusDeviceConfig, ModbusPoint
from gateway.decode import decode_registers, register_count
from gateway.errors import DecodeError
from gateway.normalize import Sample
from gateway.sources import Emit

__all__ = ["ModbusSource"]

log = logging.getLogger("husvakt.gateway.modbus")


class ModbusSource:
    """One Modbus TCP device and the sensors in its registers.

    Every `poll_interval` each sensor yields a sample: a value, or a fault naming what went wrong
    (`modbus-unreachable`, `modbus-timeout`, `modbus-exception-N`), so a dead device shows up as
    faults rather than silence. The schedule is fixed-rate: a slow poll does not shift the next.
    """

    def __init__(
        self,
        *,
        name: str,
        device: ModbusDeviceConfig,
        points: Sequence[tuple[str, ModbusPoint]],
        clock: Clock,
    ) -> None:
        self._name = name
        self._device = device
        self._points = tuple(points)
        self._clock = clock

    @property
    def name(self) -> str:
        return self._name

    async def run(self, emit: Emit) -> None:
        client = AsyncModbusTcpClient(
            self._device.host,
            port=self._device.port,
            timeout=self._device.timeout,
            retries=0,
            reconnect_delay=0,
        )
        interval = timedelta(seconds=self._device.poll_interval)
        due = self._clock.now()
        try:
            while True:
                await self._poll(client, emit)
                due += interval
                now = self._clock.now()
                if due < now:  # fell behind (e.g. a long outage): skip missed slots, keep the phase
                    missed = (now - due) // interval + 1
                    due += missed * interval
                await self._clock.sleep((due - now).total_seconds())
        finally:
            client.close()

    async def _poll(self, client: AsyncModbusTcpClient, emit: Emit) -> None:
        if not client.connected and not await client.connect():
            log.debug("%s: %s:%d unreachable", self._name, self._device.host, self._device.port)
            await self._emit_all(emit, "modbus-unreachable")
            return
        for sensor, point in self._points:
            ts = self._clock.now()
            try:
                value = await self._read(client, point)
            except DecodeError as exc:
                await emit(Sample(sensor=sensor, ts=ts, fault=exc.reason))
            except (ConnectionException, ModbusIOException) as exc:
                log.info("%s: %s while reading %s", self._name, exc, sensor)
                client.close()
                await self._emit_all(emit, "modbus-timeout")
                return
            except ModbusException as exc:
                await emit(Sample(sensor=sensor, ts=ts, fault=f"modbus-error: {exc}"[:60]))
            else:
                await emit(Sample(sensor=sensor, ts=ts, value=value))

    async def _read(self, client: AsyncModbusTcpClient, point: ModbusPoint) -> float:
        count = register_count(point.data_type)
        read = (
            client.read_holding_registers
            if point.registers == "holding"
            else client.read_input_registers
        )
        response = await read(point.address, count=count, device_id=self._device.device_id)
        if isinstance(response, ExceptionResponse) or response.isError():
            code = getattr(response, "exception_code", 0)
            raise DecodeError(f"modbus-exception-{code}")
        return decode_registers(response.registers, point.data_type, point.word_order)

    async def _emit_all(self, emit: Emit, fault: str) -> None:
        ts = self._clock.now()
        for sensor, _ in self._points:
            await emit(Sample(sensor=sensor, ts=ts, fault=fault))
