"""The whole site configuration: one YAML file, validated once into frozen models."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from pydantic import BaseModel, ConfigDict, field_validator

from casebridge.config import (
    CaseStoreConfig,
    NotifyConfig,
    RouteRow,
    TeamConfig,
    WebConfig,
    routing_problems,
)
from gateway.config import (
    MANUAL_GATEWAY,
    GatewayConfig,
    ManualPoint,
    SensorConfig,
    SiteConfig,
    sensor_problems,
)
from gateway.configfile import ConfigError, Loc, load_model, read_yaml
from stream.config import DEFAULT_RULES, RuleRow, StreamConfig, rule_problems, with_defaults
from stream.registry import Registry

__all__ = ["ConfigError", "HusvaktConfig", "load_config"]


class HusvaktConfig(BaseModel):
    """Sites and their rooms, the gateway and its sensors, rules, teams, routing, case store."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    sites: tuple[SiteConfig, ...]
    gateway: GatewayConfig | None = None
    sensors: tuple[SensorConfig, ...] = ()
    rules: tuple[RuleRow, ...] = DEFAULT_RULES
    stream: StreamConfig = StreamConfig()
    teams: tuple[TeamConfig, ...] = ()
    routing: tuple[RouteRow, ...] = ()
    cases: CaseStoreConfig = CaseStoreConfig()
    notify: NotifyConfig = NotifyConfig()
    web: WebConfig = WebConfig()

    @field_validator("rules", mode="before")
    @classmethod
    def _defaults_for_unmentioned_conditions(cls, rows: object) -> object:
        return with_defaults(rows)

    def site_of(self, sensor: SensorConfig) -> str:
        site = sensor.site or (self.gateway.site if self.gateway else None)
        assert site is not None, "validated: every sensor has a site"
        return site

    def gateway_of(self, sensor: SensorConfig) -> str | None:
        """The gateway whose readings of `sensor` the server takes (a meter read by hand:
        the `manual` one)."""
        if isinstance(sensor.source, ManualPoint):
            return MANUAL_GATEWAY
        return sensor.gateway or (self.gateway.id if self.gateway else None)

    def sensor_index(self) -> dict[tuple[str, str], SensorConfig]:
        """(site, sensor id) → sensor, with each sensor's site and gateway filled in."""
        return {
            (self.site_of(s), s.id): s.model_copy(
                update={"site": self.site_of(s), "gateway": self.gateway_of(s)}
            )
            for s in self.sensors
        }

    def timezones(self) -> dict[str, str]:
        """Each site's IANA time zone (rules reading local time use it)."""
        return {site.id: site.timezone for site in self.sites}

    def registry(self) -> Registry:
        """The allow-list of what the server evaluates: these sites, gateways and sensors."""
        gateways = {(self.gateway.site, self.gateway.id)} if self.gateway else set()
        return Registry(self.sensor_index(), gateways=gateways)


def _problems(config: HusvaktConfig) -> Iterator[tuple[Loc, str]]:
    if not config.sites:
        yield ("sites",), "add at least one site"
    placement = list(sensor_problems(config.sites, config.gateway, config.sensors))
    yield from placement
    if any(loc[-1] == "site" for loc, _ in placement):
        return  # the rule checks need every sensor's site
    yield from rule_problems(config.rules, [(config.site_of(s), s) for s in config.sensors])
    yield from routing_problems(config.routing, config.teams)


def load_config(path: Path) -> HusvaktConfig:
    """Read and validate `path`. Raises `ConfigError` listing every problem with file:line."""
    doc = read_yaml(path)
    config = load_model(HusvaktConfig, doc, check=_problems)
    store = config.cases.sqlite
    if not store.is_absolute():
        resolved = (path.parent / store).resolve()
        config = config.model_copy(
            update={"cases": config.cases.model_copy(update={"sqlite": resolved})}
        )
    gw = config.gateway
    if gw is not None and not gw.outbox.path.is_absolute():
        outbox = gw.outbox.model_copy(update={"path": (path.parent / gw.outbox.path).resolve()})
        config = config.model_copy(update={"gateway": gw.model_copy(update={"outbox": outbox})})
    gw = config.gateway
    if gw is not None and gw.quarantine is not None and not gw.quarantine.is_absolute():
        where = (path.parent / gw.quarantine).resolve()
        config = config.model_copy(update={"gateway": gw.model_copy(update={"quarantine": where})})
    stream = config.stream
    if stream.state is not None and not stream.state.is_absolute():
        stream = stream.model_copy(update={"state": (path.parent / stream.state).resolve()})
    if stream.quarantine is not None and not stream.quarantine.is_absolute():
        where = (path.parent / stream.quarantine).resolve()
        stream = stream.model_copy(update={"quarantine": where})
    if not stream.kafka.data_dir.is_absolute():
        kafka = stream.kafka.model_copy(
            update={"data_dir": (path.parent / stream.kafka.data_dir).resolve()}
        )
        stream = stream.model_copy(update={"kafka": kafka})
    return config.model_copy(update={"stream": stream})
