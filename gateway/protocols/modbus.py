"""Modbus: which registers a sensor takes, what a device's answer means — a value, or the
fault a real device shows (an exception code, a timeout, a connection gone)."""

from __future__ import annotations

from collections.abc import Sequence

from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException

from gateway.config import ModbusPoint
from gateway.decode import decode_registers, register_count
from gateway.errors import DecodeError
from gateway.protocols import Decoded

__all__ = ["TIMEOUT", "UNREACHABLE", "decode_answer", "fault_of", "register_count"]

#: The fault of every sensor behind a device the gateway cannot reach.
UNREACHABLE = "modbus-unreachable"
#: ... and behind a device that stopped answering.
TIMEOUT = "modbus-timeout"


def decode_answer(
    sensor: str, point: ModbusPoint, registers: Sequence[int] | None, exception_code: int = 0
) -> Decoded:
    """A device's answer to a read: its registers, or (None) the exception code it sent."""
    if registers is None:
        return Decoded(sensor, fault=f"modbus-exception-{exception_code}")
    try:
        return Decoded(sensor, value=decode_registers(registers, point.data_type, point.word_order))
    except DecodeError as exc:
        return Decoded(sensor, fault=exc.reason)


def fault_of(exc: ModbusException) -> str:
    """The fault a failed request shows: the connection gone, no answer, or another error."""
    if isinstance(exc, ConnectionException):
        return UNREACHABLE
    if isinstance(exc, ModbusIOException):
        return TIMEOUT
    return f"modbus-error: {exc}"[:60]
