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
from typing import Any

from casebridge.history import ReadingHistory
from casebridge.notify import Escalator, Notifier, run_notifications
from casebridge.store import CaseStore
from gateway.clock import Clock
from gateway.models import Reading
from gateway.uplink import kafka_key, kafka_readings, kafka_status
from husvakt.allinone import bridge_for, channels_for
from husvakt.config import HusvaktConfig
from stream.engine import EmbeddedEngine
from stream.history import InfluxHistory
from stream.models import Alarm
from stream.state import SqliteRuleState
from stream.table import RuleTable
from stream.uplink_in import GatewayStatus, UplinkSubscriber

__all__ = ["EmbeddedServer", "FaustServer"]

log = logging.getLogger("husvakt.stream.server")


class _Server:
    """What both shapes share: the uplink subscriber, the case bridge with its notifications
    and escalations, and the reading history (in memory for enrichment, InfluxDB if set)."""

    def __init__(
        self,
        *,
        config: HusvaktConfig,
        clock: Clock,
        store: CaseStore,
        on_readings: Callable[[list[Reading]], Awaitable[None]],
        on_status: Callable[[GatewayStatus], Awaitable[None]],
    ) -> None:
        stream = config.stream
        self._config = config
        self._clock = clock
        self.history = ReadingHistory()
        self.influx = InfluxHistory(stream.influx) if stream.influx else None
        self.bridge = bridge_for(config, store=store, clock=clock, history=self.history)
        self.subscriber = UplinkSubscriber(
            broker=stream.broker,
            client_id=stream.client_id,
            on_readings=on_readings,
            on_status=on_status,
        )
        self.notifier = Notifier(store=store, channels=channels_for(config, clock))
        self.escalator = Escalator(store=store, teams=config.teams, notify=config.notify)

    def _remember(self, readings: list[Reading]) -> None:
        for reading in readings:
            self.history.add(reading)
        if self.influx is not None:
            self.influx.add(readings)

    async def _notifications(self, stop: asyncio.Event) -> None:
        await run_notifications(
            notifier=self.notifier,
            escalator=self.escalator,
            clock=self._clock,
            every=self._config.notify.check_every,
            stop=stop,
        )


class EmbeddedServer(_Server):
    def __init__(self, *, config: HusvaktConfig, clock: Clock, store: CaseStore) -> None:
        super().__init__(
            config=config,
            clock=clock,
            store=store,
            on_readings=self._readings,
            on_status=self._status,
        )
        stream = config.stream
        self.engine = EmbeddedEngine(
            table=RuleTable(config.rules, config.sensor_index()),
            clock=clock,
            sink=self._hand_off,
            late_after=stream.late_after,
            watch_gateways=True,
            state=SqliteRuleState(stream.state) if stream.state else None,
        )

    async def _hand_off(self, alarm: Alarm) -> None:
        await self.bridge.handle(alarm)

    async def _readings(self, readings: list[Reading]) -> None:
        self._remember(readings)
        await self.engine.process_batch(readings)

    async def _status(self, status: GatewayStatus) -> None:
        await self.engine.status(status.site, status.gateway, online=status.online, ts=status.ts)

    async def run(self, stop: asyncio.Event) -> None:
        stream = self._config.stream
        async with asyncio.TaskGroup() as tg:
            tasks = [
                tg.create_task(self.subscriber.run(), name="uplink subscriber"),
                tg.create_task(self.engine.run_ticks(stream.tick_every, stop), name="ticks"),
                tg.create_task(self._notifications(stop), name="notifications"),
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
            on_readings=self._ingest_readings,
            on_status=self._ingest_status,
        )
        self._store = store
        self._started = asyncio.Lock()
        self._store_ready = False
        self.engine = FaustEngine(
            rules=config.rules, sensors=config.sensor_index(), config=config.stream
        )
        app = self.engine.app
        app.agent(self.engine.alarms, name="record-cases")(self._record_cases)
        app.task(self._run_subscriber)
        app.task(self._run_notifications)
        if self.influx is not None:
            app.task(self._run_influx)

    async def _ensure_store(self) -> None:
        async with self._started:
            if not self._store_ready:
                await self._store.start()
                self._store_ready = True

    async def _ingest_readings(self, readings: list[Reading]) -> None:
        first = readings[0]
        self._remember(readings)
        payload = b"[" + b",".join(r.model_dump_json().encode() for r in readings) + b"]"
        sent = await self.engine.readings.send(
            key=kafka_key(first.site, first.gateway), value=kafka_readings(payload)
        )
        await sent  # Kafka has it before the MQTT message is acknowledged

    async def _ingest_status(self, status: GatewayStatus) -> None:
        sent = await self.engine.readings.send(
            key=kafka_key(status.site, status.gateway),
            value=kafka_status(status.online, status.ts),
        )
        await sent

    async def _record_cases(self, stream: Any) -> None:
        await self._ensure_store()
        async for value in stream:
            try:
                alarm = Alarm.model_validate_json(value)
            except ValueError as exc:
                self.engine.quarantine.add("alarm-unusable", str(exc))
                continue
            await self.bridge.handle(alarm)

    async def _run_subscriber(self) -> None:
        await self.subscriber.run()

    async def _run_notifications(self) -> None:
        await self._ensure_store()
        await self._notifications(asyncio.Event())

    async def _run_influx(self) -> None:
        assert self.influx is not None
        await self.influx.run()
