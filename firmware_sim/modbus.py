"""A thermometer behind a Modbus TCP device: int16 holding register in tenths of a °C."""

from __future__ import annotations

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from firmware_sim.signal import Clock, Profile

__all__ = ["ModbusThermometer"]


class ModbusThermometer:
    """A pymodbus server whose register `address` holds the profile's temperature × 10 at the
    moment it is read. A glitch value that is a string makes the device answer with Modbus
    exception 4 (server device failure), as a real device with a broken probe does."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        profile: Profile,
        clock: Clock,
        device_id: int = 1,
        address: int = 0,
    ) -> None:
        self._profile = profile
        self._clock = clock
        self._address = address
        self.reads = 0
        device = SimDevice(
            device_id,
            simdata=[SimData(0, count=max(16, address + 1), values=0, datatype=DataType.REGISTERS)],
            action=self._on_access,
        )
        self._server = ModbusTcpServer(device, address=(host, port))

    async def _on_access(  # noqa: PLR0917 - the signature pymodbus calls
        self,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        self.reads += 1
        value = self._profile.value_at(self._clock.now())
        if isinstance(value, str):
            return ExcCodes.DEVICE_FAILURE
        index = self._address - start_address
        if 0 <= index < len(registers):
            registers[index] = round(value * 10) & 0xFFFF
        return None

    async def start(self) -> None:
        await self._server.serve_forever(background=True)

    async def stop(self) -> None:
        await self._server.shutdown()  # type: ignore[no-untyped-call]  # untyped in pymodbus
