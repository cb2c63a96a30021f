"""Recent readings per sensor, kept in memory for enriching cases (bounded)."""

from __future__ import annotations

from collections import deque
from datetime import datetime

from casebridge.models import ReadingPoint
from gateway.models import Reading

__all__ = ["ReadingHistory"]


class ReadingHistory:
    """The last `per_sensor` good readings of each sensor; at most `max_sensors` sensors (the
    least recently updated is forgotten first). Every reading passes here, few are ever asked
    for (a case opening): points are kept as plain pairs and made models when asked."""

    def __init__(self, *, per_sensor: int = 240, max_sensors: int = 20_000) -> None:
        self._per_sensor = per_sensor
        self._max_sensors = max_sensors
        self._points: dict[tuple[str, str], deque[tuple[datetime, float]]] = {}

    def add(self, reading: Reading) -> None:
        if reading.quality != "good":
            return
        key = (reading.site, reading.sensor)
        points = self._points.pop(key, None)
        if points is None:
            points = deque(maxlen=self._per_sensor)
            if len(self._points) >= self._max_sensors:
                del self._points[next(iter(self._points))]
        points.append((reading.ts, reading.value))
        self._points[key] = points  # re-inserted: dict order is recency order

    def recent(self, site: str, sensor: str) -> tuple[ReadingPoint, ...]:
        return tuple(
            ReadingPoint(ts=ts, value=value) for ts, value in self._points.get((site, sensor), ())
        )
