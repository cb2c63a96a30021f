"""Recent readings per sensor, kept in memory for enriching cases (bounded)."""

from __future__ import annotations

from collections import deque

from casebridge.models import ReadingPoint
from gateway.models import Reading

__all__ = ["ReadingHistory"]


class ReadingHistory:
    """The last `per_sensor` good readings of each sensor; at most `max_sensors` sensors (the
    least recently updated is forgotten first)."""

    def __init__(self, *, per_sensor: int = 240, max_sensors: int = 20_000) -> None:
        self._per_sensor = per_sensor
        self._max_sensors = max_sensors
        self._points: dict[tuple[str, str], deque[ReadingPoint]] = {}

    def add(self, reading: Reading) -> None:
        if reading.quality != "good":
            return
        key = (reading.site, reading.sensor)
        points = self._points.pop(key, None)
        if points is None:
            points = deque(maxlen=self._per_sensor)
            if len(self._points) >= self._max_sensors:
                del self._points[next(iter(self._points))]
        points.append(ReadingPoint(ts=reading.ts, value=reading.value))
        self._points[key] = points  # re-inserted: dict order is recency order

    def recent(self, site: str, sensor: str) -> tuple[ReadingPoint, ...]:
        return tuple(self._points.get((site, sensor), ()))
