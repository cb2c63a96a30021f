"""The composition root: how a config becomes running parts.

Every runtime — `husvakt run` (AllInOne), `husvakt stream` (the embedded and the Faust
server), `husvakt replay`, `husvakt demo`, `husvakt cases serve` — builds its case store, case
bridge, notification channels, notifier and escalator, rule engine and outbox here, so that a
setting means the same in each of them. Only `husvakt/` composes (an import-linter contract):
the packages below it take their parts as arguments.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from casebridge.bridge import CaseBridge
from casebridge.config import NotifyConfig
from casebridge.errors import SinkSetupError, WebhookSecretError
from casebridge.history import ReadingHistory
from casebridge.notify import (
    Channel,
    Escalator,
    Notifier,
    SmtpChannel,
    WebhookChannel,
    run_notifications,
)
from casebridge.sinks import Sink, SinkRunner
from casebridge.sinks.config import DynamicsSinkConfig, WebhookSinkConfig
from casebridge.sinks.webhook import WebhookSink
from casebridge.store import CaseStore
from gateway.clock import Clock
from gateway.quarantine import Quarantine
from gateway.secrets import read_secret
from husvakt.config import HusvaktConfig
from stream.conditions import Vocabulary
from stream.config import MeterRule
from stream.engine import EmbeddedEngine
from stream.lag import LagMonitor
from stream.models import Alarm
from stream.state import SqliteRuleState
from stream.table import RuleTable

if TYPE_CHECKING:
    from fastapi import FastAPI

    from casebridge.sinks.dynamics.client import DataverseClient
    from casebridge.store.sql import SqlCaseStore

__all__ = [
    "CaseDesk",
    "WebhookSecretError",
    "bridge_for",
    "case_desk",
    "case_web_app",
    "channels_for",
    "dynamics_client",
    "open_cases",
    "rule_engine",
    "sinks_for",
]

log = logging.getLogger("husvakt.assemble")


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


def sink_for(
    config: DynamicsSinkConfig | WebhookSinkConfig, *, store: CaseStore, clock: Clock
) -> Sink:
    """The sink one `sinks:` entry describes (its secrets read here)."""
    if isinstance(config, WebhookSinkConfig):
        secret = read_secret(config.secret_file)
        if config.secret_file is not None and not secret:
            raise WebhookSecretError(
                f"sink {config.id}'s secret_file {config.secret_file} is empty: put a long "
                "random secret in it"
            )
        return WebhookSink(
            id=config.id,
            url=config.url,
            secret=secret.encode() if secret else None,
            clock=clock,
            timeout=config.timeout,
        )
    from casebridge.sinks.dynamics.sink import DynamicsSink  # noqa: PLC0415 - msal extra

    return DynamicsSink(config, store=store, client=dynamics_client(config))


def dynamics_client(config: DynamicsSinkConfig) -> DataverseClient:
    """The Web API client of a Dynamics sink; `SinkSetupError` without the `dynamics` extra."""
    if importlib.util.find_spec("msal") is None:
        raise SinkSetupError(
            f"sink {config.id} (Dynamics 365) needs Microsoft's msal: "
            "pip install 'husvakt[dynamics]'"
        )
    from casebridge.sinks.dynamics.client import DataverseClient  # noqa: PLC0415

    return DataverseClient(config)


def sinks_for(
    config: HusvaktConfig, *, store: CaseStore, clock: Clock, only: str | None = None
) -> tuple[SinkRunner, ...]:
    """A runner for each sink the config names (`only`: for that one alone)."""
    runners = []
    for entry in config.sinks:
        if only not in (None, entry.id):
            continue
        sink = sink_for(entry, store=store, clock=clock)
        pull = getattr(sink, "pull", None)
        runners.append(
            SinkRunner(
                store=store,
                sink=sink,
                clock=clock,
                every=entry.every,
                batch=entry.batch,
                max_retry=entry.max_retry,
                pull=pull,
                pull_every=getattr(entry, "poll", 0.0),
            )
        )
    return tuple(runners)


@dataclass(frozen=True)
class CaseDesk:
    """What works the cases once they are open: the bridge that opens them, the notifier
    that delivers the outbox, the escalator that moves unacknowledged cases up, and the
    sinks that mirror every change to external systems."""

    bridge: CaseBridge
    notifier: Notifier
    escalator: Escalator
    every: float
    sinks: tuple[SinkRunner, ...] = ()

    async def hand_off(self, alarms: Sequence[Alarm]) -> None:
        await self.bridge.handle_many(alarms)

    async def run(self, clock: Clock, stop: asyncio.Event) -> None:
        """Deliver and escalate every `every` seconds, and mirror to each sink on its own
        schedule (a sink that is down never holds up a notification), until `stop`."""
        async with asyncio.TaskGroup() as tg:
            for runner in self.sinks:
                tg.create_task(runner.run(stop), name=f"sink {runner.id}")
            await run_notifications(
                notifier=self.notifier,
                escalator=self.escalator,
                clock=clock,
                every=self.every,
                stop=stop,
            )


def case_desk(
    config: HusvaktConfig,
    *,
    store: CaseStore,
    clock: Clock,
    history: ReadingHistory | None = None,
    channels: Mapping[str, Channel] | None = None,
    notify: NotifyConfig | None = None,
    mirror: bool = True,
) -> CaseDesk:
    """The case desk a config describes; `channels` and `notify` replace the config's (a
    replay records what would have been sent instead of sending it, and mirrors nothing:
    `mirror=False`)."""
    notify = notify or config.notify
    return CaseDesk(
        bridge=bridge_for(config, store=store, clock=clock, notify=notify, history=history),
        notifier=Notifier(
            store=store,
            channels=dict(channels) if channels is not None else channels_for(config, clock),
        ),
        escalator=Escalator(store=store, teams=config.teams, notify=notify),
        every=notify.check_every,
        sinks=sinks_for(config, store=store, clock=clock) if mirror else (),
    )


def rule_engine(
    config: HusvaktConfig,
    *,
    clock: Clock,
    sink: Callable[[Sequence[Alarm]], Awaitable[None]],
    watch_gateways: bool,
    quarantine: Quarantine | None = None,
    replay: bool = False,
) -> EmbeddedEngine:
    """The embedded rule engine a config describes: its rule table, registry, clock-skew and
    lag bounds and its state file. `watch_gateways`: off where the gateway runs in the same
    process. A `replay` evaluates whatever it is given on a virtual clock and keeps nothing
    (no registry, no state file, no lag)."""
    stream = config.stream
    return EmbeddedEngine(
        table=RuleTable(config.rules, config.sensor_index(), config.timezones()),
        clock=clock,
        sink=sink,
        late_after=stream.late_after,
        watch_gateways=watch_gateways,
        state=SqliteRuleState(stream.state) if stream.state and not replay else None,
        registry=None if replay else config.registry(),
        quarantine=quarantine,
        max_skew=stream.max_clock_skew,
        lag=None if replay else LagMonitor(max_lag=stream.max_lag, window=stream.lag_window),
    )


async def open_cases(config: HusvaktConfig) -> SqlCaseStore:
    """The case store a config names, migrated and ready."""
    # SQLAlchemy loads here, not at import: `husvakt gateway` on a small Pi never needs it.
    from casebridge.store.sql import open_store  # noqa: PLC0415

    store = open_store(config.cases)
    await store.start()
    return store


def case_web_app(config: HusvaktConfig, *, store: CaseStore, clock: Clock) -> FastAPI:
    """The case API and the web pages of a config, on `store`."""
    from casebridge.app import create_app  # noqa: PLC0415 - FastAPI only where it is served

    return create_app(
        store=store,
        teams=config.teams,
        clock=clock,
        sites=config.sites,
        rule_state=config.stream.state,
        web=config.web,
        conditions=Vocabulary(config.rules),
        sensors=config.sensor_index(),
        meters=meters_of(config),
        photos=config.cases.photos,
    )


def meters_of(config: HusvaktConfig) -> dict[tuple[str, str], float | None]:
    """(site, sensor) of every sensor a meter rule watches → its counter's rollover."""
    sensors = config.sensor_index()
    table = RuleTable(config.rules, sensors, config.timezones())
    found: dict[tuple[str, str], float | None] = {}
    for (site, sensor), entry in sensors.items():
        for row in table.rules_for(site, sensor, entry.kind):
            if isinstance(row, MeterRule):
                found[(site, sensor)] = row.rollover
    return found
