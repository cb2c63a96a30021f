"""Every reading to InfluxDB as well (v2 write API), batched and off the rule path.

`add` only appends to a bounded in-memory buffer; a background task writes batches and retries
with backoff while the database is unreachable. History is a record for charts and analysis,
not for the rules: when the buffer is full the oldest points are dropped and counted, and no
reading or alarm ever waits for InfluxDB.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Iterable

from influxdb_client.client.influxdb_client_async import InfluxDBClientAsync
from influxdb_client.client.write.point import Point
from influxdb_client.domain.write_precision import WritePrecision

from gateway.backoff import Backoff
from gateway.models import Reading
from gateway.secrets import read_secret
from stream.config import InfluxConfig

__all__ = ["InfluxHistory", "point"]

log = logging.getLogger("husvakt.stream.influx")


def point(reading: Reading, measurement: str) -> Point:
    p = (
        Point(measurement)
        .tag("site", reading.site)
        .tag("gateway", reading.gateway)
        .tag("sensor", reading.sensor)
        .tag("kind", reading.kind)
        .tag("unit", reading.unit)
        .tag("quality", reading.quality)
        .field("value", reading.value)
        .field("seq", reading.seq)
        .time(reading.ts, WritePrecision.MS)
    )
    if reading.fault:
        p = p.tag("fault", reading.fault)
    return p


class InfluxHistory:
    def __init__(self, config: InfluxConfig) -> None:
        self._config = config
        self._token = read_secret(config.token_file) or ""
        self._buffer: deque[Point] = deque()
        self._ready = asyncio.Event()
        self.written = 0
        self.dropped = 0
        self.failures = 0
        self._attempted = asyncio.Event()

    @property
    def pending(self) -> int:
        return len(self._buffer)

    def add(self, readings: Iterable[Reading]) -> None:
        for reading in readings:
            if len(self._buffer) >= self._config.buffer:
                self._buffer.popleft()
                self.dropped += 1
            self._buffer.append(point(reading, self._config.measurement))
        if len(self._buffer) >= self._config.batch_size:
            self._ready.set()

    async def run(self) -> None:
        """Write until cancelled; on cancellation, one last attempt to write what is buffered."""
        backoff = Backoff(cap=60.0)
        async with InfluxDBClientAsync(
            url=self._config.url, token=self._token, org=self._config.org
        ) as client:
            writer = client.write_api()
            try:
                while True:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._ready.wait(), self._config.flush_every)
                    self._ready.clear()
                    while self._buffer:
                        if not await self._write_batch(writer):
                            await asyncio.sleep(backoff.next_delay())
                            break
                        backoff.reset()
            except asyncio.CancelledError:
                while self._buffer and await self._write_batch(writer):
                    pass
                raise

    async def _write_batch(self, writer: object) -> bool:
        size = min(self._config.batch_size, len(self._buffer))
        batch = [self._buffer[i] for i in range(size)]
        try:
            await writer.write(  # type: ignore[attr-defined]
                bucket=self._config.bucket, org=self._config.org, record=batch
            )
        except Exception as exc:  # noqa: BLE001 - any failure: keep the points, retry later
            self.failures += 1
            log.warning("InfluxDB write failed (%s); %d points waiting", exc, len(self._buffer))
            self._attempted.set()
            return False
        for _ in range(size):
            self._buffer.popleft()
        self.written += size
        self._attempted.set()
        return True

    async def wait_until(self, done: Callable[[], bool]) -> None:
        """Return once `done()` holds, checking after every write attempt."""
        while True:
            self._attempted.clear()
            if done():
                return
            await self._attempted.wait()
