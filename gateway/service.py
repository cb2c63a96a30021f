"""The gateway: builds a source per connection, normalises what they read, hands readings on."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from gateway.backoff import Backoff
from gateway.clock import Clock
from gateway.config import GatewayConfig, ManualPoint, MqttPoint, SensorConfig, format_duration
from gateway.decode import value_path_for
from gateway.models import Reading
from gateway.normalize import Sample, normalize
from gateway.outbox import NoRoomError, SqliteOutbox
from gateway.quarantine import Quarantine, SqliteQuarantine
from gateway.secrets import read_secret
from gateway.sources import Source
from gateway.sources.modbus import modbus_sources
from gateway.sources.mqtt import mqtt_sources
from gateway.sources.onewire import onewire_sources
from gateway.sources.serial import serial_sources
from gateway.timesync import boot_id, clock_synced
from gateway.uplink import KafkaUplink, MqttUplink

__all__ = ["Gateway", "build_sources", "run_gateway"]

log = logging.getLogger("husvakt.gateway")
_T = TypeVar("_T")

#: Builds the sources of one source type from its sensors' (id, point) pairs.
SourceBuilder = Callable[..., Sequence[Source]]


#: How each `source.type` of a sensor is read: the builder of its sources (one per broker,
#: Modbus connection, serial port, 1-Wire bus). A new protocol is a module under `sources/`
#: with its builder, a codec under `protocols/`, and a line here.
SOURCE_TYPES: dict[str, SourceBuilder] = {
    "mqtt": mqtt_sources,
    "modbus": modbus_sources,
    "serial": serial_sources,
    "onewire": onewire_sources,
}


def build_sources(
    config: GatewayConfig,
    sensors: Sequence[SensorConfig],
    *,
    clock: Clock,
    quarantine: Quarantine,
) -> list[Source]:
    """The sources that read the sensors of this gateway."""
    by_type: dict[str, list[tuple[str, Any]]] = {kind: [] for kind in SOURCE_TYPES}
    for sensor in sensors:
        if sensor.gateway not in (None, config.id):
            continue  # another gateway reads it (a server-wide config)
        source = sensor.source
        if isinstance(source, ManualPoint):
            continue  # a person reads it
        if isinstance(source, MqttPoint):  # where its kind of value sits in its device's shape
            path = value_path_for(source.format, sensor.kind, source.value_path)
            source = source.model_copy(update={"value_path": path})
        by_type[source.type].append((sensor.id, source))
    sources: list[Source] = []
    for kind, points in by_type.items():
        if points:
            sources.extend(SOURCE_TYPES[kind](config, points, clock=clock, quarantine=quarantine))
    return sources


@dataclass(slots=True)
class SourceHealth:
    """What a source has handed on: readings good and faulty, and whether its latest was good
    (a device unreachable shows as faults from every sensor behind it)."""

    good: int = 0
    fault: int = 0
    up: bool = False


class Gateway:
    """Runs every source as a named task; their samples become readings in the outbox.

    Sources hand samples over a bounded queue (back-pressure, never drops) to one writer that
    commits them to the outbox in batches; the outbox numbers them. A sample that carries a
    `committed` callback (an MQTT message waiting for its acknowledgement) has it called once
    its reading is on disk — or once it was quarantined. A sample that cannot be normalised,
    or a reading the outbox refuses on its own, is quarantined; a failing disk is retried.
    """

    def __init__(
        self,
        *,
        config: GatewayConfig,
        sensors: Sequence[SensorConfig],
        clock: Clock,
        outbox: SqliteOutbox,
        batch: int = 500,
    ) -> None:
        self._config = config
        self._sensors = {s.id: s for s in sensors}
        self._outbox = outbox
        self._batch = batch
        self.quarantine = Quarantine(
            store=SqliteQuarantine(config.quarantine) if config.quarantine else None
        )
        self._sources = build_sources(config, sensors, clock=clock, quarantine=self.quarantine)
        self._pending = Pending(config.queue_size)
        self._clock = clock
        self._synced = clock_synced(config.clock.sync)
        #: readings taken before the clock synced wait in the outbox's file (`hold`), with
        #: the boot and the monotonic time each was taken at; the lock makes holding and
        #: releasing one at a time, so none is held after the last release
        self._holding = False
        self._hold_lock = asyncio.Lock()
        self._boot = boot_id()
        self.counts: Counter[str] = Counter()
        #: per source (by name): what it handed on, for the metrics
        self.source_health: dict[str, SourceHealth] = {
            s.name: SourceHealth() for s in self._sources
        }

    @property
    def sources(self) -> tuple[Source, ...]:
        return tuple(self._sources)

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Read from every source until `stop` is set (or until cancelled); on `stop`, return
        once everything already read is committed to the outbox."""
        log.info(
            "gateway %s/%s: %d sources, %d sensors; outbox %s",
            self._config.site,
            self._config.id,
            len(self._sources),
            len(self._sensors),
            self._outbox.path,
        )
        self._holding = not self._synced()
        if self._holding:
            log.warning(
                "the clock is not synchronised: readings are held until it is (at most %s)",
                format_duration(self._config.clock.max_hold),
            )
        await self._held_before()
        async with asyncio.TaskGroup() as tg:
            watch = tg.create_task(self._watch_clock(), name="clock")
            writer = tg.create_task(self._write(), name="outbox writer")
            flusher = tg.create_task(self.quarantine.run(), name="quarantine")
            sources = [
                tg.create_task(
                    source.run(self._accept_from(source.name)), name=f"source {source.name}"
                )
                for source in self._sources
            ]
            await (stop or asyncio.Event()).wait()
            for task in sources:
                task.cancel()
            watch.cancel()
            await self._pending.join()  # what is held stays held, for the next start
            writer.cancel()
            flusher.cancel()

    def _accept_from(self, name: str) -> Callable[[Sequence[Sample]], Awaitable[None]]:
        health = self.source_health.setdefault(name, SourceHealth())

        async def accept(samples: Sequence[Sample]) -> None:
            if samples:
                faults = sum(1 for s in samples if s.fault is not None)
                health.fault += faults
                health.good += len(samples) - faults
                health.up = samples[-1].fault is None
            await self.accept(samples)

        return accept

    @property
    def held(self) -> int:
        """Readings held until the clock syncs."""
        return self._outbox.held

    async def _held_before(self) -> None:
        """Readings an earlier run held: those of this boot are held on (or go on with their
        true times, if the clock synced meanwhile); those of an earlier boot cannot be given
        a true time, and are quarantined."""
        if not self._outbox.held:
            return
        # an earlier boot's come first (they were held first): quarantined until none is left
        while rows := await self._outbox.held_samples(HELD_BATCH):
            other = [r for r in rows if not (self._boot and r[1] == self._boot)]
            for *_, sample in other:
                self.quarantine.add(
                    "held-across-reboot",
                    "taken before the clock synced, in an earlier boot: its time is unknown",
                    source="gateway",
                    raw=sample,
                )
            if not other:
                break
            await self._unhold([r[0] for r in other])
            self.counts["held_across_reboot"] += len(other)
        log.warning("%d readings held from before a restart", self._outbox.held)
        if not self._holding and self._outbox.held:
            self._holding = True
            await self._release("the clock is synchronised")

    async def _watch_clock(self) -> None:
        """Release the held readings once the clock syncs (or `max_hold` has passed)."""
        started = time.monotonic()
        while self._holding:
            await asyncio.sleep(1.0)
            if self._synced():
                await self._release("the clock is synchronised")
            elif time.monotonic() - started > self._config.clock.max_hold:
                await self._release("the clock never synchronised; trusting it")

    async def _release(self, why: str) -> None:
        """Give each held reading its true time — the clock now, less how long ago (by the
        monotonic clock) it was taken — and move it into the outbox (one transaction a batch:
        none is lost or sent twice). Then stop holding."""
        async with self._hold_lock:
            if not self._holding:
                return
            released = 0
            while rows := await self._outbox.held_samples(HELD_BATCH):
                now, mono = self._clock.now(), time.monotonic()
                readings = []
                for _, _, at, text in rows:
                    sample = self._unheld(text, at, now, mono)
                    reading = None if sample is None else self._reading(sample)
                    if reading is not None:
                        readings.append(reading)
                await self._commit(readings, unhold=[r[0] for r in rows])
                released += len(readings)
            self._holding = False
        log.warning("%s: %d held readings go on, with their true times", why, released)

    def _unheld(self, text: str, at: float, now: datetime, mono: float) -> Sample | None:
        """A held sample back from the outbox's file, taken at monotonic time `at`: its true
        time is `now` less how long ago that was (None: a damaged row, quarantined)."""
        if not 0.0 <= at <= mono:  # NaN too: no time this boot's clock has shown
            why = f"taken at {at!r} s of a boot now at {mono:.0f} s"
            self.quarantine.add("held-damaged", why, source="gateway", raw=text)
            return None
        try:
            sensor, value, fault, state = json.loads(text)
            return Sample(str(sensor), now - timedelta(seconds=mono - at), value, fault, None,
                          bool(state))  # fmt: skip
        except Exception as exc:  # noqa: BLE001 - one damaged row stops nothing
            self.quarantine.add("held-damaged", repr(exc), source="gateway", raw=text)
            return None

    async def accept(self, samples: Sequence[Sample]) -> None:
        """Normalise a source's samples and queue their readings for the outbox (held, with
        the monotonic time, while the clock is not synchronised)."""
        if self._holding:
            async with self._hold_lock:
                if self._holding:  # still: the release did not come between
                    await self._hold(samples)
                    return
        queued: list[Waiting] = []
        for sample in samples:
            reading = self._reading(sample)
            if reading is None:
                _done(sample.committed)
            else:
                queued.append((reading, sample.committed))
        if queued:
            await self._pending.put_all(queued)

    async def _hold(self, samples: Sequence[Sample]) -> None:
        """Hold `samples` in the outbox's file; each is acknowledged once it is there."""
        at, boot = time.monotonic(), self._boot
        rows = [(boot, at, json.dumps([s.sensor, s.value, s.fault, s.state])) for s in samples]
        dropped = await _until_done(
            lambda: self._outbox.hold(rows, keep=self._config.clock.hold),
            f"holding {len(rows)} readings",
        )
        self.counts["dropped_unsynced"] += dropped
        for sample in samples:
            _done(sample.committed)

    async def _unhold(self, ids: Sequence[int]) -> None:
        """Take held samples out of the outbox's file (retried until it works: one left
        behind would be released again)."""
        await _until_done(lambda: self._outbox.append([], unhold=ids), "releasing held readings")

    def _reading(self, sample: Sample) -> Reading | None:
        """The sample's reading; None when it has none (quarantined, with its reason)."""
        sensor = self._sensors.get(sample.sensor)
        if sensor is None:
            self.quarantine.add("unknown-sensor", sample.sensor, source="gateway")
            return None
        site = sensor.site or self._config.site
        try:
            # seq 0 until the outbox numbers the reading as it commits it
            reading = normalize(sample, sensor, site=site, gateway=self._config.id, seq=0)
        except Exception as exc:  # a sample that cannot be normalised stops nothing
            log.exception("normalising a sample of %s failed", sample.sensor)
            self.quarantine.add(
                "normalize-failed",
                f"{type(exc).__name__}: {exc}",
                source=sample.sensor,
                raw=repr(sample),
            )
            return None
        self.counts[reading.quality] += 1
        if reading.fault in _WRONG_SORT:  # kept for a person to see: a device misconfigured?
            what = "an on/off state" if reading.fault == "not-a-number" else f"{sample.value!r}"
            self.quarantine.add(
                f"normalize-{reading.fault}",
                f"{what} from {sample.sensor} ({sensor.kind}, unit {sensor.unit})",
                source=sample.sensor,
            )
        return reading

    async def _write(self) -> None:
        while True:
            batch = await self._pending.take(self._batch)
            try:
                await self._commit([reading for reading, _ in batch])
                for _, committed in batch:
                    _done(committed)
            finally:
                self._pending.done(len(batch))

    async def _commit(self, readings: list[Reading], unhold: Sequence[int] = ()) -> None:
        """Append to the outbox (the held samples `unhold` leaving with them). If the batch
        fails, each reading is tried on its own: one that fails alone is quarantined; if every
        one fails, the disk is at fault and the batch is retried with backoff (nothing read is
        dropped)."""
        backoff = Backoff(cap=30.0)
        while True:
            try:
                await self._outbox.append(readings, unhold=unhold)
            except NoRoomError as exc:
                # the disk, not a reading: the outbox thinned harder; try again, keep all read
                delay = backoff.next_delay()
                log.error("%s; %d readings wait, retrying in %.1fs", exc, len(readings), delay)  # noqa: TRY400 - a full disk, said in one line
                await asyncio.sleep(delay)
                continue
            except Exception:
                log.exception("the outbox refused a batch of %d readings", len(readings))
            else:
                return
            kept = 0
            if unhold:  # they leave the held ones, whatever becomes of each reading
                await self._unhold(unhold)
                unhold = ()
            for reading in readings:
                try:
                    await self._outbox.append([reading])
                    kept += 1
                except Exception as exc:  # noqa: BLE001 - quarantined, with its reason
                    self.quarantine.add(
                        "outbox-refused",
                        f"{type(exc).__name__}: {exc}",
                        source=reading.sensor,
                        raw=repr(reading),
                    )
            if kept:
                return
            delay = backoff.next_delay()
            log.error("the outbox takes nothing; retrying in %.1fs", delay)
            await asyncio.sleep(delay)


async def _until_done(work: Callable[[], Awaitable[_T]], what: str) -> _T:
    """`work`, retried with backoff until it succeeds: the outbox's file is at fault (a full
    disk, a failing card), not an input; whoever waits on it waits (back-pressure)."""
    backoff = Backoff(cap=30.0)
    while True:
        try:
            return await work()
        except Exception as exc:  # noqa: BLE001 - said, and tried again
            delay = backoff.next_delay()
            log.error("%s failed (%s); retrying in %.1fs", what, exc, delay)  # noqa: TRY400 - the disk, said in one line
            await asyncio.sleep(delay)


#: Held readings moved into the outbox per transaction.
HELD_BATCH = 2000

#: Fault readings of a value of the wrong sort for its sensor (a state from a thermometer, a
#: number from an on/off sensor): also quarantined, since they say a device or its config is
#: wrong rather than that a probe failed.
_WRONG_SORT = frozenset({"not-a-number", "not-a-state"})

#: a reading on its way to the outbox, with the acknowledgement it waits for
Waiting = tuple[Reading, Callable[[], object] | None]


class Pending:
    """Readings on their way to the outbox, with the acknowledgement each waits for. Bounded:
    a source that finds it full waits until the writer has taken some (back-pressure, never
    drops); a run handed on when there is room is taken whole."""

    def __init__(self, room: int) -> None:
        self._items: deque[Waiting] = deque()
        self._room = room
        self._unfinished = 0
        self._has_items = asyncio.Event()
        self._has_room = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()

    async def put_all(self, items: Sequence[Waiting]) -> None:
        while len(self._items) >= self._room:
            self._has_room.clear()
            await self._has_room.wait()
        self._items.extend(items)
        self._unfinished += len(items)
        self._idle.clear()
        self._has_items.set()

    async def take(self, most: int) -> list[Waiting]:
        """Up to `most` waiting readings, in the order they came; waits for the first."""
        while not self._items:
            self._has_items.clear()
            await self._has_items.wait()
        items = self._items
        batch = [items.popleft() for _ in range(min(most, len(items)))]
        self._has_room.set()
        return batch

    def done(self, count: int) -> None:
        """`count` taken readings are committed (or quarantined)."""
        self._unfinished -= count
        if not self._unfinished:
            self._idle.set()

    async def join(self) -> None:
        """Until every reading put is done."""
        await self._idle.wait()


def _done(committed: Callable[[], object] | None) -> None:
    if committed is not None:
        try:
            committed()
        except Exception:  # an acknowledgement that fails is sent again by the broker
            log.exception("acknowledging a message failed")


async def run_gateway(
    *,
    config: GatewayConfig,
    sensors: Sequence[SensorConfig],
    clock: Clock,
    stop: asyncio.Event,
    drain_grace: float = 10.0,
    on_start: Callable[[Gateway, SqliteOutbox, Any], None] | None = None,
) -> SqliteOutbox:
    """`husvakt gateway`: sources → outbox → MQTT uplink, until `stop`; then commit what was
    read and keep uplinking for up to `drain_grace` seconds. What is left stays in the outbox
    for the next start. Returns the (closed) outbox. `on_start` is shown the gateway, its
    outbox and uplink before they start (what the metrics report)."""
    if config.uplink is None:
        raise ValueError("gateway.uplink is not configured: where should readings go?")
    outbox = SqliteOutbox.of(config.outbox)
    await outbox.open()
    uplink: MqttUplink | KafkaUplink
    if config.uplink.kafka is not None:
        uplink = KafkaUplink(config=config.uplink, site=config.site, gateway=config.id, clock=clock)
    else:
        password = read_secret(config.uplink.password_file)
        uplink = MqttUplink(
            config=config.uplink,
            site=config.site,
            gateway=config.id,
            clock=clock,
            password=password,
        )
    gateway = Gateway(config=config, sensors=sensors, clock=clock, outbox=outbox)
    if on_start is not None:
        on_start(gateway, outbox, uplink)  # the metrics see the parts
    try:
        async with asyncio.TaskGroup() as tg:
            reading = tg.create_task(gateway.run(stop), name="gateway")
            sending = tg.create_task(uplink.run(outbox), name="uplink")
            await reading
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(outbox.emptied.wait(), drain_grace)
            sending.cancel()
    finally:
        stats = outbox.stats
        log.info(
            "gateway stopped: %d uplinked, %d still buffered, %d thinned, last seq %d",
            uplink.published,
            stats.buffered,
            stats.thinned,
            stats.last_seq,
        )
        await outbox.close()
    return outbox
