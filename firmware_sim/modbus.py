"""Thermometers and meters behind Modbus devices, over TCP or on an RTU bus (a serial line, a
pty in tests): a thermometer's int16 holding register in tenths of a °C, a meter's counter in
a wider type (uint32, float64 …) in either word order, wrapping at its range as a real one."""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

from pymodbus.constants import ExcCodes
from pymodbus.framer import FramerType
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from firmware_sim import encode
from firmware_sim.play import Clock, Playback

__all__ = ["Layout", "ModbusRtuBus", "ModbusThermometer"]


class Layout(NamedTuple):
    """How a device holds its value: a register type, word order, and the value of one count
    (the default: an int16 in tenths, a thermometer's; a meter: `Layout("uint32", "big", 1)`)."""

    data_type: str = "int16"
    word_order: str = "big"
    scale: float = 0.1


class _Register:
    """The registers from `address` of a device hold the value its playback shows at the
    moment they are read (`layout`: as what; a thermometer's in tenths of a °C). A fault with
    no number to show (a broken probe, a timeout) makes the device answer with Modbus
    exception 4 (server device failure), as a real device with a broken probe does; so does a
    device with no output yet."""

    def __init__(
        self, *, playback: Playback, clock: Clock, address: int, layout: Layout | None = None
    ) -> None:
        self._playback = playback
        self._clock = clock
        self._address = address
        self._layout = layout or Layout()
        self.reads = 0

    async def on_access(  # noqa: PLR0917 - the signature pymodbus calls
        self,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        self.reads += 1
        output = self._playback.at(self._clock.now())
        shown = None if output is None else encode.shown(output)
        if output is None or shown is None:
            return ExcCodes.DEVICE_FAILURE
        words = encode.modbus_words(shown, *self._layout)
        for i, word in enumerate(words):
            index = self._address + i - start_address
            if 0 <= index < len(registers):
                registers[index] = word
        return None

    def device(self, device_id: int) -> SimDevice:
        size = max(16, self._address + 4)
        return SimDevice(
            device_id,
            simdata=[SimData(0, count=size, values=0, datatype=DataType.REGISTERS)],
            action=self.on_access,
        )


class ModbusThermometer:
    """A Modbus TCP device with one thermometer."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        playback: Playback,
        clock: Clock,
        device_id: int = 1,
        address: int = 0,
        layout: Layout | None = None,
    ) -> None:
        self._register = _Register(playback=playback, clock=clock, address=address, layout=layout)
        self._server = ModbusTcpServer(self._register.device(device_id), address=(host, port))

    @property
    def reads(self) -> int:
        return self._register.reads

    async def start(self) -> None:
        await self._server.serve_forever(background=True)

    async def stop(self) -> None:
        await self._server.shutdown()  # type: ignore[no-untyped-call]  # untyped in pymodbus


class ModbusRtuBus:
    """Several Modbus RTU devices on one serial line, each with a thermometer at `address`.
    Device ids not on the bus get no answer, as on a real RS-485 line."""

    def __init__(
        self,
        *,
        port: str,
        thermometers: Mapping[int, Playback],
        clock: Clock,
        address: int = 0,
        baudrate: int = 9600,
    ) -> None:
        self.registers = {
            device_id: _Register(playback=playback, clock=clock, address=address)
            for device_id, playback in thermometers.items()
        }
        devices = [reg.device(device_id) for device_id, reg in self.registers.items()]
        self._server = ModbusSerialServer(
            devices,
            framer=FramerType.RTU,
            port=port,
            baudrate=baudrate,
            trace_packet=self._silence_missing,
        )

    def _silence_missing(self, sending: bool, data: bytes) -> bytes:
        # pymodbus answers for ids it does not hold; on a real bus nobody would answer at all.
        if sending and data and data[0] not in self.registers:
            return b""
        return data

    async def start(self) -> None:
        await self._server.serve_forever(background=True)

    async def stop(self) -> None:
        await self._server.shutdown()  # type: ignore[no-untyped-call]  # untyped in pymodbus
