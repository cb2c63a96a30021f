"""The rule table: rows of data, not code. The most specific matching row per condition wins.

Each row names a `condition`, which decides its kind and the fields it takes:

- `freezing` / `fire` — or any condition of a site's own naming (`damp`, `co2_high`) on any
  `kind` of sensor: a threshold (`below` / `above`) with a `clear` level (hysteresis), an
  optional `critical` level, a `hold` time, flapping protection, and a `title` per language;
- `heat_rise`: a rate of rise in °C per minute over a `window`, from at least `min_samples`;
- `sensor_offline`: no good reading for `after`;
- `gateway_offline`: the gateway said it is offline (its last will), or nothing came for `after`;
- `sensor_fault`: fault readings in a row, a value stuck for hours, or an impossible jump.

A table that does not mention a condition gets that condition's default row (`DEFAULT_RULES`),
so a site that only tunes its frost levels keeps fire, heat-rise, offline and fault detection.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import Discriminator, Field, Tag, TypeAdapter, field_validator, model_validator

from gateway.config import Duration, MqttBrokerConfig, SensorConfig
from gateway.models import Frozen, Slug
from stream.conditions import DECIDED_BY, is_threshold
from stream.matching import Facts, best_rows

__all__ = [
    "CONDITIONS",
    "DEFAULT_RULES",
    "MATCH_ORDER",
    "FaultRule",
    "GatewayOfflineRule",
    "InfluxConfig",
    "KafkaConfig",
    "OfflineRule",
    "RiseRule",
    "RuleBase",
    "RuleRow",
    "StateRule",
    "StreamConfig",
    "ThresholdRule",
    "conditions_of",
    "gateway_facts",
    "parse_rule",
    "rule_problems",
    "sensor_facts",
    "with_defaults",
]

#: Match fields from most to least specific.
MATCH_ORDER = ("sensor", "gateway", "room", "building", "tag", "site", "kind")

#: The built-in conditions a rule row can decide, in the order `rules explain` lists them (a
#: config's rows add their own threshold conditions: `conditions_of`).
CONDITIONS = ("freezing", "fire", "heat_rise", "sensor_offline", "sensor_fault", "gateway_offline")

#: How long a condition's title may be, in any language.
MAX_TITLE = 80


class RuleBase(Frozen):
    """What every row has: an id, what it matches (omitted = any), and whether it is on."""

    id: Slug
    site: Slug | None = None
    building: Slug | None = None
    room: Slug | None = None
    tag: Slug | None = None
    kind: Slug | None = "temperature"
    sensor: Slug | None = None
    enabled: bool = True
    auto_resolve: bool = Field(
        default=False, description="resolve the case when the condition clears (else a person does)"
    )

    def criteria(self) -> Mapping[str, str]:
        fields = {f: getattr(self, f, None) for f in MATCH_ORDER}
        return {f: v for f, v in fields.items() if v is not None}


class TitledRule(RuleBase):
    """A row that may decide a condition of a site's own, with what it is called."""

    title: dict[Slug, str] | None = Field(
        default=None, description="what the condition is called, per language (en, sv)"
    )

    @field_validator("title")
    @classmethod
    def _titles_are_short_text(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        for language, text in (value or {}).items():
            if not text.strip() or len(text) > MAX_TITLE or not text.isprintable():
                raise ValueError(
                    f"the {language} title must be printable text of 1–{MAX_TITLE} characters"
                )
        return value


class ThresholdRule(TitledRule):
    """Raise `condition` when the value stays beyond a level for `hold`.

    `below` (freezing) or `above` (fire) is the warning level; `critical` optionally a second,
    harsher level; `clear` the level the value must get back past before the alarm clears
    (hysteresis). A sensor that raises and clears `flap_count` times within `flap_window` is
    flapping: its alarm then stays raised until the value has stayed past `clear` for `stable`.
    """

    condition: Slug
    below: float | None = None
    above: float | None = None
    critical: float | None = None
    clear: float | None = None
    hold: Duration = 0.0
    flap_count: int = Field(default=4, ge=0, description="raise/clear transitions; 0 = off")
    flap_window: Duration = 3600.0
    stable: Duration = 1800.0

    @field_validator("condition")
    @classmethod
    def _a_threshold_condition(cls, value: str) -> str:
        if not is_threshold(value):
            raise ValueError(f"{value!r} is not a threshold condition")
        return value

    @model_validator(mode="after")
    def _levels_are_consistent(self) -> Self:
        if not self.enabled:
            return self
        if (self.below is None) == (self.above is None):
            raise ValueError("give exactly one of 'below' or 'above'")
        if self.clear is None:
            raise ValueError("give 'clear', the level at which the alarm clears (hysteresis)")
        if self.below is not None:
            if self.clear <= self.below:
                raise ValueError(f"'clear' ({self.clear}) must be above 'below' ({self.below})")
            if self.critical is not None and self.critical > self.below:
                raise ValueError(
                    f"'critical' ({self.critical}) must not be above 'below' ({self.below})"
                )
        if self.above is not None:
            if self.clear >= self.above:
                raise ValueError(f"'clear' ({self.clear}) must be below 'above' ({self.above})")
            if self.critical is not None and self.critical < self.above:
                raise ValueError(
                    f"'critical' ({self.critical}) must not be below 'above' ({self.above})"
                )
        return self

    @property
    def level(self) -> float:
        """The warning level (whichever of below/above is set)."""
        level = self.below if self.below is not None else self.above
        assert level is not None, "validated: exactly one of below/above"
        return level


_STATE: TypeAdapter[bool] = TypeAdapter(bool)


class StateRule(ThresholdRule):
    """Raise `condition` when an on/off sensor (unit `bool`) shows `state` for `hold`: a water
    leak detected (at once), a door left open (`state: off` on a contact sensor, hold 30m), a
    pump's failure input. Its levels are the state's own, so it takes no `below`, `above`,
    `clear` or `critical`; hold, flapping and titles work as for any threshold. `kind` must be
    named (a thermometer's 1.0 °C is no state)."""

    kind: Slug  # required here: every state row names its sensors' kind
    state: bool = Field(description="the state that raises the condition: on/true or off/false")

    @model_validator(mode="before")
    @classmethod
    def _levels_of_the_state(cls, data: object) -> object:
        if not isinstance(data, dict) or "state" not in data:
            return data
        given = [f for f in ("below", "above", "clear", "critical") if f in data]
        if given:
            raise ValueError(f"a state row takes no {', '.join(given)}: its levels are the state's")
        on = _STATE.validate_python(data["state"])  # on/off, true/false, yes/no, 1/0
        levels = {"above": 0.5, "clear": 0.0} if on else {"below": 0.5, "clear": 1.0}
        return {**data, **levels}


class RiseRule(TitledRule):
    """Raise `heat_rise` when the temperature climbs at `rate` °C per minute or faster — or a
    condition of a site's own when any kind of value climbs at `rate` of its unit per minute
    (`{condition: co2_rising, kind: co2, rate: 100, window: 10m}`: a row with a `rate`).

    The rate is the least-squares slope of the good readings within `window`, from at least
    `min_samples` of them spanning at least `min_span` (a burst of lines that a stalled serial
    adapter delivers at once must not look like a jump); it clears once the slope is back below
    `clear_rate`.
    """

    condition: Slug
    rate: float = Field(default=8.3, gt=0, description="units (°C) per minute")
    critical_rate: float | None = Field(default=None, gt=0)
    clear_rate: float | None = Field(default=None, ge=0, description="default: half of rate")
    window: Duration = 120.0
    min_samples: int = Field(default=3, ge=2)
    min_span: Duration = 30.0

    @field_validator("condition")
    @classmethod
    def _a_rate_condition(cls, value: str) -> str:
        if value != "heat_rise" and (value in CONDITIONS or not is_threshold(value)):
            raise ValueError(f"{value!r} is not a rate condition")
        return value

    @model_validator(mode="after")
    def _rates_are_consistent(self) -> Self:
        if self.clear_rate is not None and self.clear_rate >= self.rate:
            raise ValueError(f"'clear_rate' ({self.clear_rate}) must be below 'rate' ({self.rate})")
        if self.critical_rate is not None and self.critical_rate < self.rate:
            raise ValueError(
                f"'critical_rate' ({self.critical_rate}) must not be below 'rate' ({self.rate})"
            )
        if self.window <= 0:
            raise ValueError("'window' must be longer than 0 s")
        return self

    @property
    def clear_level(self) -> float:
        return self.clear_rate if self.clear_rate is not None else self.rate / 2


class OfflineRule(RuleBase):
    """Raise `sensor_offline` when a sensor has sent no good reading for `after`. Held back
    while its gateway is offline or the sensor has a `sensor_fault` raised (the more precise
    diagnosis)."""

    condition: Literal["sensor_offline"]
    kind: Slug | None = None
    after: Duration = 900.0


class GatewayOfflineRule(RuleBase):
    """Raise `gateway_offline` (for the gateway, not a sensor) when its status says offline or
    nothing has arrived from it for `after`. Matches on `site` and `gateway` only."""

    condition: Literal["gateway_offline"]
    kind: Slug | None = None
    gateway: Slug | None = None
    after: Duration = 600.0

    @model_validator(mode="after")
    def _gateway_fields_only(self) -> Self:
        named = [f for f in ("building", "room", "tag", "kind", "sensor") if getattr(self, f)]
        if named:
            raise ValueError(
                f"a gateway_offline row matches on site and gateway only, not {', '.join(named)}"
            )
        return self


class FaultRule(RuleBase):
    """Raise `sensor_fault` on `faults` fault readings in a row, a value unchanged (within
    `stuck_tolerance`) for `stuck`, or a jump of more than `jump` °C within `jump_within`.
    Readings that are stuck or jumped are then treated as fault readings by every other rule,
    so a broken sensor never raises freezing or fire. Clears after `clear_after` good readings.
    """

    condition: Literal["sensor_fault"]
    kind: Slug | None = None
    faults: int = Field(default=3, ge=0, description="fault readings in a row; 0 = off")
    stuck: Duration | None = Field(default=21600.0, description="null = off")
    stuck_tolerance: float = Field(default=0.0, ge=0)
    jump: float | None = Field(default=30.0, gt=0, description="°C; null = off")
    jump_within: Duration = 60.0
    clear_after: int = Field(default=3, ge=1)


def _row_kind(data: object) -> str:
    """Which kind of row this is: a row with a `state` is a state row, one with a `rate` a
    rate row; else the condition names it (any other condition: a threshold)."""
    if isinstance(data, dict):
        if "state" in data:
            return "state"
        if "rate" in data:
            return "rise"
        condition = data.get("condition")
    else:
        if isinstance(data, StateRule):
            return "state"
        if isinstance(data, RiseRule):
            return "rise"
        condition = getattr(data, "condition", "")
    return DECIDED_BY.get(str(condition), "threshold")


RuleRow = Annotated[
    Annotated[StateRule, Tag("state")]
    | Annotated[ThresholdRule, Tag("threshold")]
    | Annotated[RiseRule, Tag("rise")]
    | Annotated[OfflineRule, Tag("offline")]
    | Annotated[GatewayOfflineRule, Tag("gateway_offline")]
    | Annotated[FaultRule, Tag("fault")],
    Discriminator(_row_kind),
]
_ROW: TypeAdapter[
    StateRule | ThresholdRule | RiseRule | OfflineRule | GatewayOfflineRule | FaultRule
] = TypeAdapter(RuleRow)


def parse_rule(data: Mapping[str, Any]) -> RuleBase:
    """One row from its YAML/JSON form."""
    return _ROW.validate_python(dict(data))


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


#: Levels from REFERENCE.md: frost protection engages below 5 °C (held 10 min to ride out a door
#: left open), pipes at real risk at 2 °C, clear at 7 °C; EN 54-5 A1 heat detectors tolerate
#: 50 °C ambient, so above 50 °C is abnormal heat, and NFPA 72's "ordinary" fixed-temperature
#: class starts at 57 °C; rate-of-rise detectors respond at 8.3 °C/min (15 °F/min).
DEFAULT_RULES: tuple[RuleBase, ...] = (
    ThresholdRule(
        id="freezing", condition="freezing", below=5.0, critical=2.0, clear=7.0, hold=600.0
    ),
    ThresholdRule(id="fire", condition="fire", above=50.0, critical=57.0, clear=45.0, hold=0.0),
    RiseRule(id="heat-rise", condition="heat_rise"),
    OfflineRule(id="sensor-offline", condition="sensor_offline"),
    FaultRule(id="sensor-fault", condition="sensor_fault"),
    GatewayOfflineRule(id="gateway-offline", condition="gateway_offline"),
)


def with_defaults(rows: object) -> object:
    """A YAML `rules:` list plus the default row of every condition it does not mention."""
    if not isinstance(rows, list | tuple):
        return rows
    mentioned = {r.get("condition") for r in rows if isinstance(r, Mapping)}
    mentioned |= {_condition(r) for r in rows if isinstance(r, RuleBase)}
    return [*rows, *(r for r in DEFAULT_RULES if _condition(r) not in mentioned)]
