"""Modbus source: polls devices' registers on a fixed schedule, over TCP or an RTU bus."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timedelta

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException
from pymodbus.framer import FramerType
from pymodbus.pdu import ExceptionResponse

from gateway.cancel import honour_cancellation
from gateway.clock import Clock, every
from gateway.config import GatewayConfig, ModbusDeviceConfig, ModbusPoint
from gateway.normalize import Sample
from gateway.protocols import Decoded
from gateway.protocols.modbus import UNREACHABLE, decode_answer, fault_of, register_count
from gateway.quarantine import Quarantine
from gateway.sources import Emit

__all__ = ["ModbusDevice", "ModbusSource", "modbus_sources"]

log = logging.getLogger("husvakt.gateway.modbus")

Client = AsyncModbusTcpClient | AsyncModbusSerialClient
ModbusDevice = tuple[ModbusDeviceConfig, Sequence[tuple[str, ModbusPoint]]]
#: A device that keeps failing is polled only every 2ⁿ-th cycle (n ≤ 4), so on a shared RTU bus
#: a dead device does not eat the others' bus time; a device that answers is back at once.
MAX_SKIP_EXPONENT = 4


def modbus_client(device: ModbusDeviceConfig) -> Client:
    """A client for a device, over TCP or RTU, that neither retries nor reconnects by itself
    (the source decides when)."""
    if device.serial is not None:
        return AsyncModbusSerialClient(
            device.serial,
            framer=FramerType.RTU,
            baudrate=device.baudrate,
            parity=device.parity,
            stopbits=device.stopbits,
            bytesize=device.bytesize,
            timeout=device.timeout,
            retries=0,
            reconnect_delay=0,
        )
    assert device.host is not None, "validated: a device has a host or a serial line"
    return AsyncModbusTcpClient(
        device.host, port=device.port, timeout=device.timeout, retries=0, reconnect_delay=0
    )


async def read_point(
    client: Client, device: ModbusDeviceConfig, sensor: str, point: ModbusPoint
) -> Decoded:
    """One point's registers, decoded (a device's exception: the fault it names). Raises
    pymodbus's connection errors."""
    count = register_count(point.data_type)
    read = (
        client.read_holding_registers
        if point.registers == "holding"
        else client.read_input_registers
    )
    response = await read(point.address, count=count, device_id=device.device_id)
    if isinstance(response, ExceptionResponse) or response.isError():
        return decode_answer(sensor, point, None, getattr(response, "exception_code", 0))
    return decode_answer(sensor, point, response.registers)


class ModbusSource:
    """One connection — a Modbus TCP device, or an RTU bus with several devices — and the
    sensors in their registers.

    Every cycle each sensor yields a sample: a value, or a fault naming what went wrong
    (`modbus-unreachable`, `modbus-timeout`, `modbus-exception-N`), so a dead device shows up
    as faults rather than silence. The schedule is fixed-rate: a slow poll does not shift the
    next one, and a connection that fails is simply tried again next cycle.
    """

    def __init__(self, *, name: str, devices: Sequence[ModbusDevice], clock: Clock) -> None:
        if not devices:
            raise ValueError("a Modbus source needs at least one device")
        self._name = name
        self._devices = tuple(devices)
        self._clock = clock
        self._interval = timedelta(seconds=min(d.poll_interval for d, _ in devices))
        self._failures = [0] * len(devices)

    @property
    def name(self) -> str:
        return self._name

    async def run(self, emit: Emit) -> None:
        client = modbus_client(self._devices[0][0])
        try:
            async for cycle in every(self._clock, self._interval):
                await self._poll(client, emit, cycle)
                honour_cancellation()
        finally:
            client.close()

    async def _poll(self, client: Client, emit: Emit, cycle: int) -> None:
        if not client.connected and not await client.connect():
            log.debug("%s: unreachable", self._name)
            for _, points in self._devices:
                await self._emit_all(emit, points, UNREACHABLE)
            return
        for index, (device, points) in enumerate(self._devices):
            skip = 2 ** min(self._failures[index], MAX_SKIP_EXPONENT)
            if cycle % skip:
                continue
            ok = await self._poll_device(client, device, points, emit)
            self._failures[index] = 0 if ok else self._failures[index] + 1
            if not client.connected:
                return

    async def _poll_device(
        self,
        client: Client,
        device: ModbusDeviceConfig,
        points: Sequence[tuple[str, ModbusPoint]],
        emit: Emit,
    ) -> bool:
        for sensor, point in points:
            ts = self._clock.now()
            try:
                decoded = await read_point(client, device, sensor, point)
            except (ConnectionException, ModbusIOException) as exc:
                # the device (or the line to it) is gone: every sensor behind it shows it
                log.info("%s: device %d: %s", self._name, device.device_id, exc)
                await self._emit_all(emit, points, fault_of(exc))
                if isinstance(exc, ConnectionException) or device.serial is None:
                    client.close()  # reconnect next cycle (a TCP peer that stopped answering too)
                return False
            except ModbusException as exc:
                await emit([Sample(sensor=sensor, ts=ts, fault=fault_of(exc))])
            else:
                await emit([Sample.of(decoded, ts)])
        return True

    async def _emit_all(
        self, emit: Emit, points: Sequence[tuple[str, ModbusPoint]], fault: str
    ) -> None:
        ts = self._clock.now()
        await emit([Sample(sensor=sensor, ts=ts, fault=fault) for sensor, _ in points])


def modbus_sources(
    config: GatewayConfig,
    sensors: Sequence[tuple[str, ModbusPoint]],
    *,
    clock: Clock,
    quarantine: Quarantine,
) -> list[ModbusSource]:
    """A TCP device is a connection of its own; devices on one serial line share an RTU bus."""
    by_device: dict[str, list[tuple[str, ModbusPoint]]] = {}
    for sensor_id, point in sensors:
        by_device.setdefault(point.device, []).append((sensor_id, point))
    connections: dict[str, list[ModbusDevice]] = {}
    for device_id, points in by_device.items():
        device = config.modbus_devices[device_id]
        key = f"rtu:{device.serial}" if device.serial else f"modbus:{device_id}"
        connections.setdefault(key, []).append((device, points))
    return [
        ModbusSource(name=key, devices=devices, clock=clock) for key, devices in connections.items()
    ]
