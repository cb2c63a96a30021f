"""1-Wire: a DS18B20's `w1_slave` file (None: the device directory is gone)."""

from __future__ import annotations

from gateway.decode import parse_w1_slave
from gateway.errors import DecodeError
from gateway.protocols import Decoded

__all__ = ["decode_w1"]


def decode_w1(sensor: str, text: str | None) -> Decoded:
    if text is None:
        return Decoded(sensor, fault="sensor-lost")
    try:
        return Decoded(sensor, value=parse_w1_slave(text))
    except DecodeError as exc:
        return Decoded(sensor, fault=exc.reason)
