"""The all-in-one runtime: gateway → outbox → embedded rules → case bridge, in one process."""

from __future__ import annotations

import asyncio
import logging

from casebridge.history import ReadingHistory
from casebridge.readings import ManualReadings, ReadingArchive
from casebridge.store import CaseStore
from gateway.clock import Clock
from gateway.models import Reading
from gateway.outbox import SqliteOutbox
from gateway.service import Gateway
from gateway.uplink import LocalUplink
from husvakt.assemble import case_desk, rule_engine
from husvakt.config import HusvaktConfig

__all__ = ["AllInOne"]

log = logging.getLogger("husvakt.run")


class AllInOne:
    """Readings go through the same durable outbox as on a split deployment, and leave it only
    after the rules evaluated them and their alarms are recorded as cases."""

    def __init__(
        self, *, config: HusvaktConfig, clock: Clock, store: CaseStore, outbox: SqliteOutbox
    ) -> None:
        if config.gateway is None:
            raise ValueError("the all-in-one runtime needs a 'gateway' section in the config")
        sensors = config.sensor_index()
        self._clock = clock
        self.outbox = outbox
        self.history = ReadingHistory()
        self.gateway = Gateway(
            config=config.gateway, sensors=list(sensors.values()), clock=clock, outbox=outbox
        )
        self.desk = case_desk(config, store=store, clock=clock, history=self.history)
        self.bridge = self.desk.bridge
        # the gateway runs in this very process: if the process runs, so does its gateway
        self.engine = rule_engine(
            config,
            clock=clock,
            sink=self.desk.hand_off,
            watch_gateways=False,
            quarantine=self.gateway.quarantine,
        )
        self._tick_every = config.stream.tick_every
        for (site, sensor), entry in sensors.items():
            if entry.gateway != config.gateway.id:
                continue  # read by another gateway, or by hand
            self.engine.watch(site, config.gateway.id, [(sensor, entry.kind)])
        self.uplink = LocalUplink(consume=self._evaluate)
        self.archive = ReadingArchive(store, keep=config.cases.keep_readings)
        self.manual = ManualReadings(store, self._by_hand)

    async def _evaluate(self, readings: list[Reading], outbox: str) -> None:
        for reading in readings:
            self.history.add(reading)
        self.archive.add(readings)
        await self.engine.process_batch(readings, outbox=outbox, source="local")

    async def _by_hand(self, readings: list[Reading]) -> None:
        for reading in readings:
            self.history.add(reading)
        await self.engine.process_batch(readings, outbox="manual", source="by hand")

    async def run(self, stop: asyncio.Event) -> None:
        """Run until `stop` is set; then stop reading, and return once every reading already
        read has been evaluated and its alarms recorded as cases."""
        async with asyncio.TaskGroup() as tg:
            gateway = tg.create_task(self.gateway.run(stop), name="gateway")
            uplink = tg.create_task(self.uplink.run(self.outbox), name="local uplink")
            notify = tg.create_task(self.desk.run(self._clock, stop), name="notifications")
            ticks = tg.create_task(self.engine.run_ticks(self._tick_every, stop), name="ticks")
            archive = tg.create_task(self.archive.run(self._clock, stop), name="archive")
            manual = tg.create_task(self.manual.run(self._clock, stop), name="by hand")
            await gateway  # returns after `stop`, with everything read in the outbox
            await self.outbox.emptied.wait()
            uplink.cancel()
            notify.cancel()
            ticks.cancel()
            manual.cancel()
            archive.cancel()
        await self._keep_last()
        self.engine.close()
        log.info(
            "stopped: readings %s, alarms %s, cases %s, quarantined %d",
            dict(self.gateway.counts),
            dict(self.engine.counts),
            dict(self.bridge.counts),
            self.gateway.quarantine.total,
        )

    async def _keep_last(self) -> None:
        try:
            await self.archive.flush()
        except Exception:
            log.warning("the last readings were not kept", exc_info=True)
