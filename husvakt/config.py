"""The whole site configuration: one YAML file, validated once into frozen models."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from casebridge.config import (
    CaseStoreConfig,
    NotifyConfig,
    RouteRow,
    TeamConfig,
    WebConfig,
    routing_problems,
)
from casebridge.sinks.config import SinkConfig, sink_problems
from gateway.config import (
    MANUAL_GATEWAY,
    GatewayConfig,
    ManualPoint,
    SensorConfig,
    SiteConfig,
    sensor_problems,
)
from gateway.configfile import ConfigError, Loc, load_model, read_yaml
from husvakt.metrics import parse_listen
from stream.conditions import Vocabulary
from stream.config import DEFAULT_RULES, RuleRow, StreamConfig, rule_problems, with_defaults
from stream.registry import Registry

__all__ = ["ConfigError", "HusvaktConfig", "load_config"]


class MetricsConfig(BaseModel):
    """Where a long-running command serves its Prometheus metrics, `/healthz` and `/readyz`
    (`--metrics` overrides it)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    listen: str | None = Field(default=None, description="HOST:PORT, e.g. 127.0.0.1:9108")

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str | None) -> str | None:
        if value is not None:
            parse_listen(value)
        return value


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
    metrics: MetricsConfig = MetricsConfig()
    #: external systems every case change is mirrored to (webhook, Dynamics 365)
    sinks: tuple[SinkConfig, ...] = ()

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


def _problems(config: HusvaktConfig, *, cases: bool) -> Iterator[tuple[Loc, str]]:
    if not config.sites:
        yield ("sites",), "add at least one site"
    placement = list(sensor_problems(config.sites, config.gateway, config.sensors))
    yield from placement
    if any(loc[-1] == "site" for loc, _ in placement):
        return  # the rule checks need every sensor's site
    yield from rule_problems(config.rules, [(config.site_of(s), s) for s in config.sensors])
    yield from sink_problems(
        config.sinks, sites=[s.id for s in config.sites], conditions=Vocabulary(config.rules)
    )
    if cases or config.routing or config.teams:
        problems = list(routing_problems(config.routing, config.teams))
        if not cases:
            yield from problems
        else:
            hint = " (a file for a gateway alone needs none: husvakt gateway)"
            for loc, message in problems:
                gateway_alone = loc == ("routing",) and not config.routing
                yield loc, message + hint if gateway_alone else message


def load_config(path: Path, *, cases: bool = True) -> HusvaktConfig:
    """Read and validate `path`. Raises `ConfigError` listing every problem with file:line.

    `cases`: the caller opens cases, so the file needs its teams and routing table; a file for
    a gateway alone (a Pi's: its site, gateway and sensors) is read with `cases=False`. Every
    relative path in the file (stores, outbox, password, secret, token and TLS files, the
    1-Wire base) is relative to the file."""
    doc = read_yaml(path)
    config = load_model(HusvaktConfig, doc, check=lambda c: _problems(c, cases=cases))
    resolved = _resolved(config, path.parent.resolve())
    assert isinstance(resolved, HusvaktConfig)
    return resolved


def _resolved(value: object, base: Path) -> object:
    """`value` with every relative `Path` in it made absolute against `base`."""
    if isinstance(value, Path):
        return value if value.is_absolute() else (base / value).resolve()
    if isinstance(value, BaseModel):
        update = {}
        for name in type(value).model_fields:
            field = getattr(value, name)
            new = _resolved(field, base)
            if new is not field:
                update[name] = new
        return value.model_copy(update=update) if update else value
    if isinstance(value, tuple | list):
        items = [_resolved(v, base) for v in value]
        changed = any(a is not b for a, b in zip(items, value, strict=True))
        return type(value)(items) if changed else value
    if isinstance(value, dict):
        pairs = {k: _resolved(v, base) for k, v in value.items()}
        return pairs if any(pairs[k] is not value[k] for k in value) else value
    return value
