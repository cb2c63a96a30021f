"""Serial lines: the port's pattern finds the value and, on a shared line, the text of the
`sensor` group that each sensor's `name` is matched against."""

from __future__ import annotations

import re
from collections.abc import Mapping

from gateway.decode import parse_line
from gateway.errors import DecodeError
from gateway.protocols import Decoded, Refused

__all__ = ["SerialCodec"]


class SerialCodec:
    """One port: `sensors` maps the `sensor` group's text to a sensor id; a pattern without a
    `sensor` group carries exactly one sensor (mapped from the empty string)."""

    def __init__(self, pattern: str, sensors: Mapping[str, str]) -> None:
        self._pattern = re.compile(pattern)
        self._sensors = dict(sensors)
        self._single = self._sensors.get("") if "sensor" not in self._pattern.groupindex else None

    def decode(self, line: str) -> Decoded | Refused | None:
        """None for an empty line (a device's blank keep-alive)."""
        line = line.strip()
        if not line:
            return None
        try:
            name, value = parse_line(line, self._pattern)
        except DecodeError as exc:
            named = self._sensors.get(exc.sensor) if exc.sensor is not None else None
            sensor = self._single if self._single is not None else named
            if sensor is None:
                return Refused("serial-unparsable", str(exc))
            return Decoded(sensor, fault=exc.reason)
        sensor = self._single if name is None else self._sensors.get(name)
        if sensor is None:
            return Refused("serial-unknown-sensor", f"{name!r}")
        return Decoded(sensor, value=value)
