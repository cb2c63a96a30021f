"""The embedded engine: asyncio, one process, the pure rules applied to batches of readings.

Readings come from the in-process gateway (all-in-one) or from the MQTT uplink topics
(`husvakt stream`). Alarms go to a sink that is awaited before the engine moves on (the case
bridge records them durably), and what a batch changed is saved after its alarms were handed
off, so a restart continues hold timers and hysteresis where they were.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import datetime

from gateway.clock import Clock
from gateway.models import Reading
from stream.core import (
    GatewayTrack,
    decode_track,
    encode_track,
    on_reading,
    on_status,
    on_tick,
    watch,
)
from stream.models import Alarm
from stream.state import SqliteRuleState
from stream.table import RuleTable

__all__ = ["AlarmSink", "EmbeddedEngine"]

log = logging.getLogger("husvakt.stream")

#: Where alarms go (the case bridge in-process). Awaited before the next reading: an alarm is
#: handed off before the engine moves on, so none is lost between stream and cases.
AlarmSink = Callable[[Alarm], Awaitable[None]]


class EmbeddedEngine:
    """Evaluates readings in arrival order, per sensor in measurement-time order.

    `watch_gateways`: raise `gateway_offline` for gateways that go silent. Off when the gateway
    runs in this very process (all-in-one): if the process runs, so does its gateway.
    """

    def __init__(
        self,
        *,
        table: RuleTable,
        clock: Clock,
        sink: AlarmSink,
        late_after: float = 300.0,
        watch_gateways: bool = False,
        state: SqliteRuleState | None = None,
    ) -> None:
        self._table = table
        self._clock = clock
        self._sink = sink
        self._late_after = late_after
        self._watch_gateways = watch_gateways
        self._state = state
        self._tracks: dict[tuple[str, str], GatewayTrack] = {}
        self._dirty: set[tuple[str, str]] = set()
        # Batches, statuses and ticks take turns: each one's alarms are handed off (awaited)
        # before another changes the state they came from.
        self._turn = asyncio.Lock()
        self.counts: Counter[str] = Counter()
        if state is not None:
            for key, data in state.load().items():
                self._tracks[key] = decode_track(data)
            if self._tracks:
                log.info(
                    "rule state restored for %d gateway(s) from %s", len(self._tracks), state.path
                )

    def _track(self, site: str, gateway: str) -> GatewayTrack:
        key = (site, gateway)
        track = self._tracks.get(key)
        if track is None:
            track = self._tracks[key] = GatewayTrack(site=site, gateway=gateway)
        self._dirty.add(key)
        return track

    def watch(self, site: str, gateway: str, sensors: Iterable[tuple[str, str]]) -> None:
        """Expect these (sensor, kind) from this gateway from now on (offline if they never
        report)."""
        track = self._track(site, gateway)
        now = self._clock.now()
        for sensor, kind in sensors:
            watch(track, sensor, kind, self._table, now)

    async def process(self, reading: Reading) -> None:
        await self.process_batch([reading])

    async def process_batch(self, readings: Sequence[Reading]) -> None:
        """Evaluate a batch, hand off its alarms, then save the changed state."""
        async with self._turn:
            await self._process_batch(readings)

    async def _process_batch(self, readings: Sequence[Reading]) -> None:
        now = self._clock.now()
        for reading in readings:
            track = self._track(reading.site, reading.gateway)
            alarms, outcome = on_reading(
                track,
                reading,
                self._table,
                now,
                late_after=self._late_after,
                watch_gateway=self._watch_gateways,
            )
            self.counts["readings" if outcome == "evaluated" else outcome] += 1
            await self._emit(alarms)
        await self.save()

    async def status(self, site: str, gateway: str, *, online: bool, ts: datetime) -> None:
        """The gateway's retained status message."""
        if not self._watch_gateways:
            return
        async with self._turn:
            now = self._clock.now()
            track = self._track(site, gateway)
            await self._emit(on_status(track, online, ts, self._table, now))
            await self.save()

    async def tick(self) -> None:
        """Let time-based rules (offline) see the time."""
        async with self._turn:
            now = self._clock.now()
            for key, track in list(self._tracks.items()):
                alarms = on_tick(track, self._table, now, watch_gateway=self._watch_gateways)
                if alarms:
                    self._dirty.add(key)
                    await self._emit(alarms)
            await self.save()

    async def run_ticks(self, every: float, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self._clock.sleep(every)
            await self.tick()

    async def _emit(self, alarms: list[Alarm]) -> None:
        for alarm in alarms:
            self.counts[f"alarms_{alarm.state}"] += 1
            log.info(
                "%s %s %s/%s (%s, %.1f)%s",
                alarm.condition,
                alarm.state,
                alarm.site,
                alarm.sensor,
                alarm.severity,
                alarm.value,
                " late" if alarm.late else "",
            )
            await self._sink(alarm)

    async def save(self) -> None:
        if self._state is None:
            self._dirty.clear()
            return
        changed = {key: encode_track(self._tracks[key]) for key in self._dirty}
        self._dirty.clear()
        await self._state.save(changed)

    def close(self) -> None:
        if self._state is not None:
            self._state.close()
