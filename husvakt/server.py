"""`husvakt stream`: the server side of a split or scale-out deployment.

Embedded (default): gateways' uplink topics on MQTT → the embedded rules → the case bridge,
with notifications, escalations and (when configured) history to InfluxDB, in one process.

Faust (`--engine faust`): a Faust worker evaluating the rules from Kafka, plus the MQTT → Kafka
ingest (an MQTT message is acknowledged only after Kafka acknowledged its copy) and the case
bridge consuming the alarms topic.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from casebridge.history import ReadingHistory
from casebridge.readings import ManualReadings, ReadingArchive
from casebridge.store import CaseStore
from gateway.clock import Clock
from gateway.models import Reading
from gateway.quarantine import Quarantine, SqliteQuarantine
from gateway.wire import Batch, Status, encode_batch, encode_kafka_status, kafka_key
from husvakt.assemble import case_desk, rule_engine
from husvakt.config import HusvaktConfig
from stream.conditions import Vocabulary
from stream.engine import hand_off
from stream.models import Alarm, decode_alarm
from stream.uplink_in import GatewayStatus, UplinkSubscriber

if TYPE_CHECKING:
    from stream.influx import InfluxHistory

__all__ = ["EmbeddedServer", "FaustServer", "admit_alarm"]

#: Alarms from the Faust alarms topic recorded in one transaction, and how long the first of
#: them waits for more.
ALARM_BATCH = 500
ALARM_LINGER = 0.005

log = logging.getLogger("husvakt.stream.server")


def admit_alarm(value: bytes, conditions: Vocabulary) -> Alarm:
    """An alarm from the alarms topic, if it is one of a condition this config decides (what a
    worker of another config, or a forger, writes there opens no case). Raises ValueError."""
    alarm = decode_alarm(value)
    if alarm.condition not in conditions:
        raise ValueError(f"an alarm of condition {alarm.condition!r}, which no rule here decides")
    return alarm


class _Server:
    """What both shapes share: the uplink subscriber, the case bridge with its notifications
    and escalations, and the reading history (in memory for enrichment, InfluxDB if set)."""

    def __init__(
        self,
        *,
        config: HusvaktConfig,
        clock: Clock,
        store: CaseStore,
        on_batch: Callable[[str, str, Batch], Awaitable[None]],
        on_status: Callable[[GatewayStatus], Awaitable[None]],
        on_settle: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        stream = config.stream
        self._config = config
        self._clock = clock
        self.history = ReadingHistory()
        self.archive = ReadingArchive(store, keep=config.cases.keep_readings)
        self.influx: InfluxHistory | None = None
        if stream.influx is not None:
            # an optional extra: imported only when configured, so a base install runs
            from stream.influx import InfluxHistory  # noqa: PLC0415

            self.influx = InfluxHistory(stream.influx)
        self.quarantine = Quarantine(
            store=SqliteQuarantine(stream.quarantine) if stream.quarantine else None
        )
        self.registry = config.registry()
        self.conditions = Vocabulary(config.rules)
        self.desk = case_desk(config, store=store, clock=clock, history=self.history)
        self.bridge = self.desk.bridge
        self.subscriber = UplinkSubscriber(
            broker=stream.broker,
            client_id=stream.client_id,
            on_batch=on_batch,
            on_status=on_status,
            on_settle=on_settle,
            quarantine=self.quarantine,
        )

    def _remember(self, readings: tuple[Reading, ...] | list[Reading]) -> None:
        for reading in readings:
            self.history.add(reading)
        self.archive.add(readings)
        if self.influx is not None:
            self.influx.add(readings)

    async def _notifications(self, stop: asyncio.Event) -> None:
        await self.desk.run(self._clock, stop)


class EmbeddedServer(_Server):
    def __init__(self, *, config: HusvaktConfig, clock: Clock, store: CaseStore) -> None:
        super().__init__(
            config=config,
            clock=clock,
            store=store,
            on_batch=self._readings,
            on_status=self._status,
            on_settle=self._settle,
        )
        self.engine = rule_engine(
            config,
            clock=clock,
            sink=self.desk.hand_off,
            watch_gateways=True,
            quarantine=self.quarantine,
        )
        self.manual = ManualReadings(store, self._by_hand)

    async def _by_hand(self, readings: list[Reading]) -> None:
        self._remember(readings)
        await self.engine.process_batch(readings, outbox="manual", source="by hand")

    async def _readings(self, site: str, gateway: str, batch: Batch) -> None:
        self._remember(batch.readings)
        await self.engine.process_batch(
            batch.readings,
            outbox=batch.outbox,
            source=f"{site}/{gateway}",
            save=False,
            message=(site, gateway, batch.payload) if batch.payload else None,
        )

    async def _settle(self) -> None:
        await self.engine.settle()

    async def _status(self, status: GatewayStatus) -> None:
        await self.engine.status(status.site, status.gateway, online=status.online, ts=status.ts)

    async def run(self, stop: asyncio.Event) -> None:
        stream = self._config.stream
        async with asyncio.TaskGroup() as tg:
            tasks = [
                tg.create_task(self.subscriber.run(), name="uplink subscriber"),
                tg.create_task(self.engine.run_ticks(stream.tick_every, stop), name="ticks"),
                tg.create_task(self._notifications(stop), name="notifications"),
                tg.create_task(self.quarantine.run(), name="quarantine"),
                tg.create_task(self.archive.run(self._clock, stop), name="archive"),
                tg.create_task(self.manual.run(self._clock, stop), name="by hand"),
            ]
            if self.influx is not None:
                tasks.append(tg.create_task(self.influx.run(), name="history"))
            await stop.wait()
            for task in tasks:
                task.cancel()
        self.engine.close()
        log.info(
            "stopped: %s; quarantined %d",
            dict(self.engine.counts),
            self.subscriber.quarantine.total,
        )


class FaustServer(_Server):
    """One Faust worker with the MQTT ingest and the case bridge as its tasks and agent."""

    def __init__(self, *, config: HusvaktConfig, clock: Clock, store: CaseStore) -> None:
        from stream.faust_engine import FaustEngine  # noqa: PLC0415 - an optional extra

        super().__init__(
            config=config,
            clock=clock,
            store=store,
            on_batch=self._ingest_readings,
            on_status=self._ingest_status,
        )
        self._store = store
        self._started = asyncio.Lock()
        self._store_ready = False
        self.engine = FaustEngine(
            rules=config.rules,
            sensors=config.sensor_index(),
            config=config.stream,
            registry=self.registry,
            quarantine=self.quarantine,
            timezones=config.timezones(),
        )
        app = self.engine.app
        app.agent(self.engine.alarms, name="record-cases")(self._record_cases)
        app.task(self._run_subscriber)
        app.task(self._run_notifications)
        app.task(self._run_readings)
        if self.influx is not None:
            app.task(self._run_influx)

    async def _ensure_store(self) -> None:
        async with self._started:
            if not self._store_ready:
                await self._store.start()
                self._store_ready = True

    async def _ingest_readings(self, site: str, gateway: str, batch: Batch) -> None:
        self._remember(batch.readings)
        sent = await self.engine.readings.send(
            key=kafka_key(site, gateway), value=encode_batch(batch.readings, outbox=batch.outbox)
        )
        await sent  # Kafka has it before the MQTT message is acknowledged

    async def _ingest_status(self, status: GatewayStatus) -> None:
        sent = await self.engine.readings.send(
            key=kafka_key(status.site, status.gateway),
            value=encode_kafka_status(Status(status.online, status.ts)),
        )
        await sent

    async def _record_cases(self, stream: Any) -> None:
        await self._ensure_store()
        # The alarms waiting on the topic go to the store together (one transaction each
        # `ALARM_BATCH`); a lone alarm waits at most `ALARM_LINGER` for company.
        async for values in stream.take(ALARM_BATCH, within=ALARM_LINGER):
            alarms = []
            for value in values:
                try:
                    alarms.append(admit_alarm(value, self.conditions))
                except ValueError as exc:
                    self.quarantine.add("alarm-unusable", str(exc), source="alarms", raw=value)
            await hand_off(alarms, self.bridge.handle_many, self.quarantine)

    async def _run_subscriber(self) -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.quarantine.run(), name="quarantine")
            tg.create_task(self.subscriber.run(), name="uplink subscriber")

    async def _run_notifications(self) -> None:
        await self._ensure_store()
        await self._notifications(asyncio.Event())

    async def _by_hand(self, readings: list[Reading]) -> None:
        self._remember(readings)
        for reading in readings:  # one message each: every reading's key is its own gateway's
            sent = await self.engine.readings.send(
                key=kafka_key(reading.site, reading.gateway),
                value=encode_batch([reading], outbox="manual"),
            )
            await sent

    async def _run_readings(self) -> None:
        await self._ensure_store()
        manual = ManualReadings(self._store, self._by_hand)
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.archive.run(self._clock), name="archive")
            tg.create_task(manual.run(self._clock), name="by hand")

    async def _run_influx(self) -> None:
        assert self.influx is not None
        await self.influx.run()
