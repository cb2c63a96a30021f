"""The embedded engine: asyncio, one process, the pure rules applied to batches of readings.

Readings come from the in-process gateway (all-in-one) or from the MQTT uplink topics
(`husvakt stream`). Alarms go to a sink that is awaited before the engine moves on (the case
bridge records them durably), and what a batch changed is saved after its alarms were handed
off, so a restart continues hold timers and hysteresis where they were: uplink messages are
journaled as they came (`stream.state`) and taken again by a restart, the rest written out.

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
from gateway.wire import decode_batch
from stream.core import (
    GatewayTrack,
    on_status,
    on_tick,
    watch,
)
from stream.errors import SinkUnavailableError
from stream.intake import Intake
from stream.kinds.base import from_micros, micros
from stream.lag import LagMonitor
from stream.models import Alarm
from stream.registry import Registry
from stream.state import JournalEntry, SqliteRuleState
from stream.table import RuleTable

__all__ = ["AlarmSink", "EmbeddedEngine", "hand_off"]

log = logging.getLogger("husvakt.stream")

#: Where alarms go (the case bridge in-process), a batch at a time, in order. Awaited before the
#: engine moves on: alarms are handed off before the state they came from is saved, so none is
#: lost between stream and cases.
AlarmSink = Callable[[Sequence[Alarm]], Awaitable[object]]

#: Readings evaluated between two yields to the event loop (keepalives, other gateways); the
#: alarms they raised are handed off together.
YIELD_EVERY = 256
#: Readings the input journal holds at most before the state is written out (what a restart
#: takes again: a few seconds of work). Ticks write the state out every `tick_every` anyway.
JOURNAL_READINGS = 200_000
#: Bytes the input journal holds at most (a flood of padded messages fills no disk with it).
JOURNAL_BYTES = 64 * 1024 * 1024
#: Journaling this many bytes of messages costs about what writing out one sensor's state does
#: (measured: a reading's ~170 bytes journaled ~1 µs, a sensor's state encoded and written
#: ~20 µs); `settle` takes whichever is cheaper.
JOURNAL_BYTES_PER_SENSOR = 3_000
#: Attempts for an alarm whose recording fails for another reason than an unavailable sink.
SINK_ATTEMPTS = 3


async def hand_off(alarms: Sequence[Alarm], sink: AlarmSink, quarantine: Quarantine) -> int:
    """Give `alarms` to `sink` until it takes them. When a batch fails for another reason than
    an unavailable sink, its alarms are tried one at a time, so one alarm that cannot be recorded
    is quarantined and the others are not held back. Returns how many were recorded."""
    if len(alarms) > 1:
        if await _give(alarms, sink, attempts=1) is None:
            return len(alarms)
        log.warning(
            "recording %d alarms together failed; recording them one at a time", len(alarms)
        )
    recorded = 0
    for alarm in alarms:
        error = await _give([alarm], sink, attempts=SINK_ATTEMPTS)
        if error is None:
            recorded += 1
        else:
            log.error("alarm %s could not be recorded: %s", alarm.episode, error)
            quarantine.add(
                "alarm-unrecorded",
                f"{type(error).__name__}: {error}",
                source=f"{alarm.site}/{alarm.sensor}/{alarm.condition}",
                raw=alarm.model_dump_json(),
            )
    return recorded


async def _give(alarms: Sequence[Alarm], sink: AlarmSink, *, attempts: int) -> Exception | None:
    """None once `sink` took `alarms`, else the last error after `attempts` failures (an
    unavailable sink is waited for, however long)."""
    delay, failures = 0.05, 0
    while True:
        try:
            await sink(alarms)
        except SinkUnavailableError as exc:
            log.warning(
                "cannot record %d alarm(s) yet (%s); retrying in %.1fs", len(alarms), exc, delay
            )
        except Exception as exc:  # noqa: BLE001 - returned; the caller logs and quarantines
            failures += 1
            if failures >= attempts:
                return exc
            log.warning("recording %d alarm(s) failed (%s); retrying", len(alarms), exc)
        else:
            return None
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
        #: alarms by (condition, state), for the metrics
        self.alarm_counts: Counter[tuple[str, str]] = Counter()
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
        #: messages taken since the last save, to be journaled by `settle`
        self._unjournaled: list[JournalEntry] = []
        #: a change since the last save that the journal cannot hold (readings from this
        #: process, a new watch): `settle` writes the state out
        self._must_write = False
        #: readings and bytes in the state's journal, replayed by a restart
        self._journaled_readings = self._journaled_bytes = 0
        # Batches, statuses and ticks take turns: each one's alarms are handed off (awaited)
        # before another changes the state they came from.
        self._turn = asyncio.Lock()
        if state is not None:
            self._tracks.update(state.load())
            self._replay(state)
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
        self._must_write = True

    async def process(self, reading: Reading) -> None:
        await self.process_batch([reading])

    async def process_batch(
        self,
        readings: Sequence[Reading],
        *,
        outbox: str | None = None,
        source: str = "",
        save: bool = True,
        message: tuple[str, str, bytes] | None = None,
    ) -> None:
        """Evaluate a batch, hand off its alarms, then save the changed state. `outbox`: the id
        of the gateway outbox that numbered the batch; `source`: where it came from (a topic),
        for the quarantine; without `save`, the caller calls `settle` before it acknowledges
        (to save once for several batches). `message`: the topic's site and gateway and the
        payload the readings were decoded from, for `settle` to journal instead of writing
        every sensor the batch touched."""
        async with self._turn:
            await self._process_batch(readings, outbox, source, save=save, message=message)

    async def settle(self) -> None:
        """Make what the batches since the last save changed survive a restart: by journaling
        their messages when every one of them came with its message and the journal is not
        full (a restart takes them again), else by writing the changed state out."""
        async with self._turn:
            state, entries = self._state, self._unjournaled
            if state is None or self._must_write or not entries:
                await self.save()
                return
            readings = sum(e.readings for e in entries)
            size = sum(len(e.payload) for e in entries)
            sensors = sum(len(self._tracks[key].changed) for key in self._dirty)
            if (
                self._journaled_readings + readings > JOURNAL_READINGS
                or self._journaled_bytes + size > JOURNAL_BYTES
                or size > sensors * JOURNAL_BYTES_PER_SENSOR
            ):
                await self.save()  # cheaper: many readings of few sensors (a backlog)
                return
            await state.journal(entries)  # failed: journaled (or saved) with the next settle
            self._unjournaled = []
            self._journaled_readings += readings
            self._journaled_bytes += size

    async def _process_batch(
        self,
        readings: Sequence[Reading],
        outbox: str | None,
        source: str,
        *,
        save: bool,
        message: tuple[str, str, bytes] | None = None,
    ) -> None:
        now = self._clock.now()
        if message is None:
            self._must_write = True
        elif self._state is not None:
            site, gateway, payload = message
            self._unjournaled.append(
                JournalEntry(micros(now), site, gateway, outbox, source, payload, len(readings))
            )
        pending: list[Alarm] = []
        for start in range(0, len(readings), YIELD_EVERY):
            if start:
                await self._emit(pending)
                pending = []
                await asyncio.sleep(0)
            chunk = readings[start : start + YIELD_EVERY]
            pending += self._intake.readings(self._track, chunk, now, outbox=outbox, source=source)
        await self._emit(pending)
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
        if not alarms:
            return
        for alarm in alarms:
            self.counts[f"alarms_{alarm.state}"] += 1
            self.alarm_counts[(alarm.condition, alarm.state)] += 1
            log.info(
                "%s %s %s/%s (%s, %.1f)%s",
                alarm.condition,
                alarm.state,
                alarm.site,
                alarm.sensor,
                alarm.severity,
                alarm.value,
                " late" if alarm.late else "",
                extra={"site": alarm.site, "sensor": alarm.sensor, "condition": alarm.condition},
            )
        await hand_off(alarms, self._sink, self.quarantine)

    async def save(self) -> None:
        """Write every changed track out (and with it, empty the journal)."""
        if self._state is None:
            self._dirty.clear()
            return
        changed = [self._tracks[key] for key in self._dirty]
        await self._state.save(changed)
        self._dirty.clear()
        self._unjournaled = []
        self._must_write = False
        self._journaled_readings = self._journaled_bytes = 0

    def _replay(self, state: SqliteRuleState) -> None:
        """Take the journaled messages again, in order, at the time they were first taken:
        their alarms were handed off then, so only their state changes are made."""
        entries = state.journaled_entries()
        readings = 0
        for entry in entries:
            try:
                batch = decode_batch(entry.payload, site=entry.site, gateway=entry.gateway)
            except Exception as exc:  # noqa: BLE001 - a damaged row must not stop the engine
                log.error(  # noqa: TRY400 - what is wrong with the row, not where in husvakt
                    "a journaled message cannot be read (%s); it is left out", exc
                )
                continue
            now = from_micros(entry.now)
            self._intake.readings(
                self._track,
                batch.readings,
                now,
                outbox=entry.outbox,
                source=entry.source,
                again=True,
            )
            readings += len(batch.readings)
        self._journaled_readings = readings
        self._journaled_bytes = sum(len(e.payload) for e in entries)
        if entries:
            log.info(
                "took %d journaled message(s) (%d readings) again from %s",
                len(entries),
                readings,
                state.path,
            )

    def close(self) -> None:
        if self._state is not None:
            self._state.close()
