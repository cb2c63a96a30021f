"""The rule table: rows of data, not code. The most specific matching row per condition wins.

Each row names a `condition`, which decides its kind and the fields it takes:

- `freezing` / `fire` — or any condition of a site's own naming (`damp`, `co2_high`) on any
  `kind` of sensor: a threshold (`below` / `above`) with a `clear` level (hysteresis), an
  optional `critical` level, a `hold` time, flapping protection, and a `title` per language;
- `heat_rise`: a rate of rise in °C per minute over a `window`, from at least `min_samples`;
- `sensor_offline`: no good reading for `after`;
- `gateway_offline`: the gateway said it is offline (its last will), or nothing came for `after`;
- `sensor_fault`: fault readings in a row, a value stuck for hours, or an impossible jump;
- a row with `state` (an on/off sensor showing a state), `rate` (any value climbing fast) or
  `meter` (a counter's consumption: per interval, night flow, spike, stopped) decides a
  condition of the site's own naming.

Each kind is a module of `stream.kinds`, which lists them. A table that does not mention a
condition gets that condition's default row (`DEFAULT_RULES`), so a site that only tunes its
frost levels keeps fire, heat-rise, offline and fault detection.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Literal

from pydantic import Field

from gateway.config import Duration, MqttBrokerConfig, SensorConfig
from gateway.models import Frozen, Slug
from stream.kinds import CONDITIONS, DEFAULT_RULES, RuleRow, parse_rule
from stream.kinds.base import MATCH_ORDER, MAX_TITLE, RuleBase, TitledRule
from stream.kinds.fault import FaultRule
from stream.kinds.gateway_offline import GatewayOfflineRule
from stream.kinds.meter import MeterRule
from stream.kinds.offline import OfflineRule
from stream.kinds.rise import RiseRule
from stream.kinds.state import StateRule
from stream.kinds.threshold import ThresholdRule
from stream.matching import Facts, best_rows

__all__ = [
    "CONDITIONS",
    "DEFAULT_RULES",
    "MATCH_ORDER",
    "MAX_TITLE",
    "FaultRule",
    "GatewayOfflineRule",
    "InfluxConfig",
    "KafkaConfig",
    "MeterRule",
    "OfflineRule",
    "RiseRule",
    "RuleBase",
    "RuleRow",
    "StateRule",
    "StreamConfig",
    "ThresholdRule",
    "TitledRule",
    "conditions_of",
    "gateway_facts",
    "parse_rule",
    "rule_problems",
    "sensor_facts",
    "with_defaults",
]


class KafkaConfig(Frozen):
    """The scale-out engine: Faust workers on Kafka (`husvakt stream --engine faust`)."""

    bootstrap: str = Field(default="127.0.0.1:9092", description="host:port[,host:port...]")
    app_id: Slug = "husvakt"
    readings_topic: str = "husvakt-readings"
    alarms_topic: str = "husvakt-alarms"
    partitions: int = Field(default=8, ge=1, description="of both topics and the state table")
    replication: int = Field(default=1, ge=1)
    data_dir: Path = Path("faust-data")
    session_timeout: Duration = 30.0
    heartbeat: Duration = 3.0
    producer_max_batch_size: int | None = Field(default=None, ge=1)
    web_port: int | None = Field(default=None, description="Faust's web view; off when null")


class InfluxConfig(Frozen):
    """Every reading also goes to InfluxDB (v2 write API), batched, off the rule path."""

    url: str
    org: str = "husvakt"
    bucket: str = "husvakt"
    token_file: Path | None = Field(default=None, description="read at start, never logged")
    measurement: str = "reading"
    batch_size: int = Field(default=1000, ge=1)
    flush_every: Duration = 5.0
    buffer: int = Field(
        default=100_000, ge=1, description="points kept while InfluxDB is unreachable"
    )


class StreamConfig(Frozen):
    """Settings of the rule engine."""

    engine: Literal["embedded", "faust"] = "embedded"
    broker: MqttBrokerConfig = Field(
        default_factory=MqttBrokerConfig,
        description="where the gateways uplink (husvakt stream subscribes here)",
    )
    client_id: str = "husvakt-stream"
    kafka: KafkaConfig = Field(default_factory=KafkaConfig)
    influx: InfluxConfig | None = None

    late_after: Duration = Field(default=300.0, description="readings older than this are 'late'")
    tick_every: Duration = Field(
        default=10.0, description="how often time-based rules (offline) are checked"
    )
    state: Path | None = Field(
        default=Path("rule-state.db"),
        description="SQLite file keeping rule state across restarts (relative to the config)",
    )
    quarantine: Path | None = Field(
        default=Path("quarantine.db"),
        description="SQLite file of refused input for `husvakt quarantine` (relative to the "
        "config); null keeps it in memory only",
    )
    max_lag: Duration = Field(
        default=30.0,
        description="when readings are evaluated later than this after measurement for a whole "
        "`lag_window`, every site gets a stream_lag case",
    )
    lag_window: Duration = 60.0
    max_clock_skew: Duration = Field(
        default=300.0,
        description="readings dated further ahead of the server's clock are refused and raise "
        "a gateway_clock case",
    )


def sensor_facts(site: str, sensor: str, kind: str, config: SensorConfig | None) -> Facts:
    """What rule and routing rows can match on, for one sensor."""
    return {
        "site": site,
        "sensor": sensor,
        "kind": kind,
        "building": config.building if config else None,
        "room": config.room if config else None,
        "tag": frozenset(config.tags) if config else frozenset(),
    }


def gateway_facts(site: str, gateway: str) -> Facts:
    """What a `gateway_offline` row can match on."""
    return {"site": site, "gateway": gateway}


def rule_problems(
    rules: Sequence[RuleBase], sensors: Sequence[tuple[str, SensorConfig]]
) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """Duplicate ids, and rows tied for most specific for some configured sensor."""
    seen: dict[str, int] = {}
    for i, row in enumerate(rules):
        if row.id in seen:
            yield ("rules", i, "id"), f"rule id {row.id!r} is already used by rules[{seen[row.id]}]"
        seen.setdefault(row.id, i)
    known = {sensor.id for _, sensor in sensors}
    for i, row in enumerate(rules):
        when = getattr(row, "when", None)
        if when is not None and known and when.sensor not in known:
            yield (
                ("rules", i, "when", "sensor"),
                f"no sensor {when.sensor!r} to look at: name one of the site's sensors",
            )
    index = {id(row): i for i, row in enumerate(rules)}
    reported: set[tuple[int, ...]] = set()
    conditions = [c for c in conditions_of(rules) if c != "gateway_offline"]
    for site, sensor in sensors:
        facts = sensor_facts(site, sensor.id, sensor.kind, sensor)
        for condition in conditions:
            tied = best_rows((r for r in rules if _condition(r) == condition), facts, MATCH_ORDER)
            if len(tied) > 1:
                rows = tuple(index[id(r)] for r in tied)
                if rows in reported:
                    continue
                reported.add(rows)
                names = ", ".join(f"rules[{i}] ({rules[i].id})" for i in rows)
                yield (
                    ("rules", rows[-1]),
                    f"ambiguous: {names} are equally specific for sensor {sensor.id!r} "
                    f"({condition}); make one more specific or remove one",
                )


def _condition(row: RuleBase) -> str:
    return str(getattr(row, "condition", ""))


def conditions_of(rules: Sequence[RuleBase]) -> list[str]:
    """The conditions a table decides: the built-in ones, then its own in the order named."""
    own = [c for c in dict.fromkeys(_condition(r) for r in rules) if c not in CONDITIONS]
    return [*CONDITIONS, *own]


def with_defaults(rows: object) -> object:
    """A YAML `rules:` list plus the default row of every condition it does not mention."""
    if not isinstance(rows, list | tuple):
        return rows
    mentioned = {r.get("condition") for r in rows if isinstance(r, Mapping)}
    mentioned |= {_condition(r) for r in rows if isinstance(r, RuleBase)}
    return [*rows, *(r for r in DEFAULT_RULES if _condition(r) not in mentioned)]
