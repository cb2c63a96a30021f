"""The embedded engine: asyncio, one process, the pure rules applied to batches of readings.

Readings come from the in-process gateway (all-in-one) or from the MQTT uplink topics
(`husvakt stream`). Alarms go to a sink that is awaited before the engine moves on (the case
bridge records them durably), and what a batch changed is saved after its alarms were handed
off, so a restart continues hold timers and hysteresis where they were.

Nothing a reading carries can stop the engine: each reading is admitted by the registry (the
allow-list), evaluated in isolation — any exception quarantines that reading and the batch goes
on — and a big batch yields to the event loop every few hundred readings. An alarm the sink
cannot record is retried: without end while the sink is unavailable (no case may be lost),
a few times for any other error, then quarantined so the alarms after it go on.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import datetime
from types import MappingProxyType

from gateway.clock import Clock
from gateway.models import Reading
from gateway.quarantine import Quarantine
from stream.core import (
    GatewayTrack,
    on_status,
    on_tick,
    watch,
)
from stream.errors import SinkUnavailableError
from stream.intake import Intake
from stream.lag import LagMonitor
from stream.models import Alarm
from stream.registry import Registry
from stream.state import SqliteRuleState
from stream.table import RuleTable

__all__ = ["AlarmSink", "EmbeddedEngine", "hand_off"]

log = logging.getLogger("husvakt.stream")

#: Where alarms go (the case bridge in-process). Awaited before the next reading: an alarm is
#: handed off before the engine moves on, so none is lost between stream and cases.
AlarmSink = Callable[[Alarm], Awaitable[object]]

#: Readings evaluated between two yields to the event loop (keepalives, other gateways).
YIELD_EVERY = 256
#: Attempts for an alarm whose recording fails for another reason than an unavailable sink.
SINK_ATTEMPTS = 3


async def hand_off(alarm: Alarm, sink: AlarmSink, quarantine: Quarantine) -> bool:
    """Give `alarm` to `sink` until it takes it. Returns False when the alarm itself cannot be
    recorded (it is quarantined then, and the caller goes on with the next)."""
    delay, failures = 0.05, 0
    while True:
        try:
            await sink(alarm)
        except SinkUnavailableError as exc:
            log.warning("cannot record %s yet (%s); retrying in %.1fs", alarm.episode, exc, delay)
        except Exception as exc:  # one alarm never stops the alarms after it
            failures += 1
            if failures >= SINK_ATTEMPTS:
                log.exception("alarm %s could not be recorded", alarm.episode)
                quarantine.add(
                    "alarm-unrecorded",
                    f"{type(exc).__name__}: {exc}",
                    source=f"{alarm.site}/{alarm.sensor}/{alarm.condition}",
                    raw=alarm.model_dump_json(),
                )
                return False
            log.warning("recording %s failed (%s); retrying", alarm.episode, exc)
        else:
            return True
        await asyncio.sleep(delay * (0.5 + random.random()))  # noqa: S311 - jitter, not crypto
        delay = min(delay * 2, 30.0)


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
        registry: Registry | None = None,
        quarantine: Quarantine | None = None,
        max_skew: float = 300.0,
        lag: LagMonitor | None = None,
    ) -> None:
        self._table = table
        self._clock = clock
        self._sink = sink
        self._watch_gateways = watch_gateways
        self._state = state
        self._registry = registry
        self.lag = lag
        self.quarantine = quarantine or Quarantine()
        self.counts: Counter[str] = Counter()
        self._intake = Intake(
            table=table,
            registry=registry,
            quarantine=self.quarantine,
            counts=self.counts,
            late_after=late_after,
            max_skew=max_skew,
            watch_gateway=watch_gateways,
        )
        self._tracks: dict[tuple[str, str], GatewayTrack] = {}
        self._dirty: set[tuple[str, str]] = set()
        # Batches, statuses and ticks take turns: each one's alarms are handed off (awaited)
        # before another changes the state they came from.
        self._turn = asyncio.Lock()
        if state is not None:
            self._tracks.update(state.load())
            if self._tracks:
                log.info(
                    "rule state restored for %d gateway(s) from %s", len(self._tracks), state.path
                )

    @property
    def tracks(self) -> Mapping[tuple[str, str], GatewayTrack]:
        """Every gateway's state as the engine holds it (read-only view)."""
        return MappingProxyType(self._tracks)

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

    async def process_batch(
        self,
        readings: Sequence[Reading],
        *,
        outbox: str | None = None,
        source: str = "",
        save: bool = True,
    ) -> None:
        """Evaluate a batch, hand off its alarms, then save the changed state. `outbox`: the id
        of the gateway outbox that numbered the batch; `source`: where it came from (a topic),
        for the quarantine; without `save`, the caller calls `settle` before it acknowledges
        (to save once for several batches)."""
        async with self._turn:
            await self._process_batch(readings, outbox, source, save=save)

    async def settle(self) -> None:
        """Save what the batches since the last save changed."""
        async with self._turn:
            await self.save()

    async def _process_batch(
        self, readings: Sequence[Reading], outbox: str | None, source: str, *, save: bool
    ) -> None:
        now = self._clock.now()
        for i, reading in enumerate(readings):
            if i and i % YIELD_EVERY == 0:
                await asyncio.sleep(0)
            alarms = self._intake.reading(self._track, reading, now, outbox=outbox, source=source)
            await self._emit(alarms)
        if self.lag is not None and readings:
            self.lag.observe(max(r.ts for r in readings), now)
        if save:
            await self.save()

    async def status(self, site: str, gateway: str, *, online: bool, ts: datetime) -> None:
        """The gateway's retained status message."""
        if not self._watch_gateways:
            return
        if not self._intake.admits_gateway(site, gateway, source=f"{site}/{gateway}"):
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
                try:
                    alarms = on_tick(track, self._table, now, watch_gateway=self._watch_gateways)
                except Exception as exc:
                    log.exception("tick of %s/%s failed", *key)
                    self.quarantine.add(
                        "tick-failed", f"{type(exc).__name__}: {exc}", source="/".join(key)
                    )
                    continue
                if alarms:
                    self._dirty.add(key)
                    await self._emit(alarms)
            if self.lag is not None and self._registry is not None:
                await self._emit(self.lag.tick(now, self._registry.sites()))
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
            await hand_off(alarm, self._sink, self.quarantine)

    async def save(self) -> None:
        if self._state is None:
            self._dirty.clear()
            return
        changed = [self._tracks[key] for key in self._dirty]
        await self._state.save(changed)
        self._dirty.clear()

    def close(self) -> None:
        if self._state is not None:
            self._state.close()
