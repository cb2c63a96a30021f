"""The all-in-one runtime: gateway → embedded rules → case bridge, in one process."""

from __future__ import annotations

import asyncio
import logging

from casebridge.bridge import CaseBridge
from casebridge.store import CaseStore
from gateway.clock import Clock
from gateway.models import Reading
from gateway.service import Gateway
from husvakt.config import HusvaktConfig
from stream.engine import EmbeddedEngine
from stream.models import Alarm
from stream.table import RuleTable

__all__ = ["AllInOne"]

log = logging.getLogger("husvakt.run")


class AllInOne:
    """Wires the three parts with a bounded queue between gateway and rules (back-pressure, not
    drops) and a direct, awaited hand-off from rules to cases."""

    def __init__(self, *, config: HusvaktConfig, clock: Clock, store: CaseStore) -> None:
        if config.gateway is None:
            raise ValueError("the all-in-one runtime needs a 'gateway' section in the config")
        sensors = config.sensor_index()
        self.queue: asyncio.Queue[Reading] = asyncio.Queue(maxsize=config.gateway.queue_size)
        self.gateway = Gateway(
            config=config.gateway, sensors=list(sensors.values()), clock=clock, sink=self.queue.put
        )
        self.bridge = CaseBridge(
            store=store, sites=config.sites, sensors=sensors, routes=config.routing, clock=clock
        )
        self.engine = EmbeddedEngine(
            table=RuleTable(config.rules, sensors),
            clock=clock,
            sink=self._hand_off,
            late_after=config.stream.late_after,
        )

    async def _hand_off(self, alarm: Alarm) -> None:
        await self.bridge.handle(alarm)

    async def run(self, stop: asyncio.Event) -> None:
        """Run until `stop` is set; then stop reading, and return once every reading already
        read has been evaluated and its alarms recorded as cases."""
        async with asyncio.TaskGroup() as tg:
            gateway = tg.create_task(self.gateway.run(), name="gateway")
            engine = tg.create_task(self.engine.run(self.queue), name="rules")
            await stop.wait()
            gateway.cancel()
            await self.queue.join()
            engine.cancel()
        log.info(
            "stopped: readings %s, alarms %s, cases %s, quarantined %d",
            dict(self.gateway.counts),
            dict(self.engine.counts),
            dict(self.bridge.counts),
            self.gateway.quarantine.total,
        )
