"""Errors of the gateway package.

    GatewayError
    └── DecodeError     a payload, register set or line that holds no usable value

A device or connection that cannot be read right now is not an error to raise: the source
backs off and reads it again (its readings say `fault` meanwhile).

`configfile.ConfigError` is separate: it belongs to loading, not running.
"""

from __future__ import annotations

__all__ = ["DecodeError", "GatewayError"]


class GatewayError(Exception):
    """Base of everything the gateway raises on purpose."""


class DecodeError(GatewayError):
    """Input that names a sensor but holds no usable value; `reason` becomes the fault."""

    def __init__(self, reason: str, detail: str = "", *, sensor: str | None = None) -> None:
        self.reason = reason
        self.detail = detail
        #: the sensor the input names, when it names one (a serial line's sensor group)
        self.sensor = sensor
        super().__init__(f"{reason}: {detail}" if detail else reason)
