"""The all-in-one runtime: gateway → outbox → embedded rules → case bridge, in one process."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from casebridge.bridge import CaseBridge
from casebridge.config import NotifyConfig
from casebridge.history import ReadingHistory
from casebridge.notify import (
    Channel,
    Escalator,
    Notifier,
    SmtpChannel,
    WebhookChannel,
    run_notifications,
)
from casebridge.store import CaseStore
from gateway.clock import Clock
from gateway.models import Reading
from gateway.outbox import SqliteOutbox
from gateway.secrets import read_secret
from gateway.service import Gateway
from gateway.uplink import LocalUplink
from husvakt.config import HusvaktConfig
from stream.engine import EmbeddedEngine
from stream.lag import LagMonitor
from stream.models import Alarm
from stream.state import SqliteRuleState
from stream.table import RuleTable

__all__ = ["AllInOne", "bridge_for", "channels_for"]

log = logging.getLogger("husvakt.run")


class WebhookSecretError(ValueError):
    """A webhook's secret file is empty (the service refuses to start)."""


def channels_for(config: HusvaktConfig, clock: Clock) -> dict[str, Channel]:
    """The notification channels a config sets up (secrets read from their files here)."""
    channels: dict[str, Channel] = {}
    smtp = config.notify.smtp
    if smtp is not None:
        channels["email"] = SmtpChannel(smtp, password=read_secret(smtp.password_file))
    secrets: dict[str, bytes] = {}
    for team in config.teams:
        hook = team.webhook
        if hook is None:
            continue
        if hook.secret_file is None:
            log.warning(
                "team %s's webhook %s has no secret_file: its receiver cannot tell our "
                "requests from forged ones",
                team.id,
                hook.url,
            )
            continue
        secret = read_secret(hook.secret_file)
        if not secret:
            raise WebhookSecretError(
                f"team {team.id}'s webhook secret_file {hook.secret_file} is empty: a signature "
                "with an empty key proves nothing; put a long random secret in it"
            )
        secrets[hook.url] = secret.encode()
    channels["webhook"] = WebhookChannel(secrets=secrets, clock=clock)
    return channels


def bridge_for(
    config: HusvaktConfig,
    *,
    store: CaseStore,
    clock: Clock,
    notify: NotifyConfig | None = None,
    history: ReadingHistory | None = None,
) -> CaseBridge:
    """The case bridge a config describes."""
    return CaseBridge(
        store=store,
        sites=config.sites,
        sensors=config.sensor_index(),
        routes=config.routing,
        clock=clock,
        teams=config.teams,
        rules=config.rules,
        cases=config.cases,
        notify=notify or config.notify,
        history=history,
    )


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
        self._every = config.notify.check_every
        self.outbox = outbox
        self.history = ReadingHistory()
        self.gateway = Gateway(
            config=config.gateway, sensors=list(sensors.values()), clock=clock, outbox=outbox
        )
        self.bridge = bridge_for(config, store=store, clock=clock, history=self.history)
        table = RuleTable(config.rules, sensors)
        self.engine = EmbeddedEngine(
            table=table,
            clock=clock,
            sink=self._hand_off,
            late_after=config.stream.late_after,
            state=SqliteRuleState(config.stream.state) if config.stream.state else None,
            registry=config.registry(),
            quarantine=self.gateway.quarantine,
            max_skew=config.stream.max_clock_skew,
            lag=LagMonitor(max_lag=config.stream.max_lag, window=config.stream.lag_window),
        )
        self._tick_every = config.stream.tick_every
        for (site, sensor), entry in sensors.items():
            self.engine.watch(site, config.gateway.id, [(sensor, entry.kind)])
        self.uplink = LocalUplink(consume=self._evaluate)
        self.notifier = Notifier(store=store, channels=channels_for(config, clock))
        self.escalator = Escalator(store=store, teams=config.teams, notify=config.notify)

    async def _evaluate(self, readings: list[Reading], outbox: str) -> None:
        for reading in readings:
            self.history.add(reading)
        await self.engine.process_batch(readings, outbox=outbox, source="local")

    async def _hand_off(self, alarms: Sequence[Alarm]) -> None:
        await self.bridge.handle_many(alarms)

    async def run(self, stop: asyncio.Event) -> None:
        """Run until `stop` is set; then stop reading, and return once every reading already
        read has been evaluated and its alarms recorded as cases."""
        async with asyncio.TaskGroup() as tg:
            gateway = tg.create_task(self.gateway.run(stop), name="gateway")
            uplink = tg.create_task(self.uplink.run(self.outbox), name="local uplink")
            notify = tg.create_task(
                run_notifications(
                    notifier=self.notifier,
                    escalator=self.escalator,
                    clock=self._clock,
                    every=self._every,
                    stop=stop,
                ),
                name="notifications",
            )
            ticks = tg.create_task(self.engine.run_ticks(self._tick_every, stop), name="ticks")
            await gateway  # returns after `stop`, with everything read in the outbox
            await self.outbox.emptied.wait()
            uplink.cancel()
            notify.cancel()
            ticks.cancel()
        self.engine.close()
        log.info(
            "stopped: readings %s, alarms %s, cases %s, quarantined %d",
            dict(self.gateway.counts),
            dict(self.engine.counts),
            dict(self.bridge.counts),
            self.gateway.quarantine.total,
        )
