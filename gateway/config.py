"""Configuration of sites, sensors and the gateway that reads them (frozen, validated once)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Literal, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BeforeValidator, Field, field_validator, model_validator

from gateway.decode import value_path_for
from gateway.models import Frozen, Slug

__all__ = [
    "MANUAL_GATEWAY",
    "Building",
    "Duration",
    "GatewayConfig",
    "ManualPoint",
    "ModbusDeviceConfig",
    "ModbusPoint",
    "MqttBrokerConfig",
    "MqttPoint",
    "OneWireConfig",
    "OneWirePoint",
    "OutboxConfig",
    "Room",
    "SensorConfig",
    "SerialPoint",
    "SerialPortConfig",
    "SiteConfig",
    "SourceConfig",
    "TlsConfig",
    "UplinkConfig",
    "format_duration",
    "parse_duration",
]

_DURATION = re.compile(
    r"^\s*(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m)?\s*(?:(\d+(?:\.\d+)?)s)?\s*$"
)


def parse_duration(value: object) -> object:
    """`90`, `"90s"`, `"10m"`, `"1h30m"` → seconds as float (other types left to pydantic)."""
    if isinstance(value, str):
        text = value.strip()
        match = _DURATION.match(text)
        if not text or match is None or not any(match.groups()):
            raise ValueError(f"{value!r} is not a duration; write e.g. 30s, 10m, 1h30m or seconds")
        hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
        return hours * 3600 + minutes * 60 + seconds
    return value


def format_duration(seconds: float) -> str:
    """A duration as people read it in case texts and pages, whole minutes up: `45 min`,
    `90 min`, `2 h`, `2 h 30 min`, `3 d`, `3 d 4 h` (the inverse of `parse_duration`, in words
    every text of husvakt shares)."""
    minutes = max(0, round(seconds / 60))
    if minutes < 120:
        return f"{minutes} min"
    if minutes < 48 * 60:
        hours, rest = divmod(minutes, 60)
        return f"{hours} h" if rest == 0 else f"{hours} h {rest} min"
    days, rest = divmod(minutes // 60, 24)
    return f"{days} d" if rest == 0 else f"{days} d {rest} h"


#: A duration in seconds; YAML may write `30s`, `10m`, `1h30m` or a number of seconds.
#: The longest duration a config may give: a hundred years. `inf` (and `1e400`, which YAML
#: reads as it) is refused: it would overflow every date it is added to.
MAX_DURATION = 100 * 365 * 86400.0
Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    Field(ge=0, le=MAX_DURATION, allow_inf_nan=False),
]


class Room(Frozen):
    id: Slug
    name: str | None = None
    floor: str | int | None = None


class Building(Frozen):
    id: Slug
    name: str | None = None
    rooms: tuple[Room, ...] = ()


class SiteConfig(Frozen):
    """A place husvakt watches: a school, a care home. Its registry enriches every case."""

    id: Slug
    name: str
    address: str | None = None
    access_notes: str | None = None
    contact: str | None = None
    timezone: str = Field(default="UTC", description="IANA zone for routing time windows")
    map_url: str | None = None
    buildings: tuple[Building, ...] = ()

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (use e.g. Europe/Stockholm)") from None
        return value

    def room(self, building: str | None, room: str | None) -> tuple[Building | None, Room | None]:
        for b in self.buildings:
            if b.id == building:
                return b, next((r for r in b.rooms if r.id == room), None)
        return None, None


# --- sources -------------------------------------------------------------------------------


class TlsConfig(Frozen):
    """TLS to the broker: the CA that signed it, and optionally our client certificate."""

    ca_file: Path
    cert_file: Path | None = None
    key_file: Path | None = None


class MqttBrokerConfig(Frozen):
    """A broker the gateway's MQTT sensors publish to (often a local mosquitto)."""

    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    username: str | None = None
    password_file: Path | None = Field(default=None, description="read at start, never logged")
    tls: TlsConfig | None = None
    keepalive: int = Field(default=30, ge=5)


class ModbusDeviceConfig(Frozen):
    """A Modbus device: over TCP (`host`, `port`) or RTU on a serial line (`serial`, the port's
    path, with its line settings). Devices sharing a serial line are one RTU bus, polled in
    turn. Every sensor on a device is read once per `poll_interval`."""

    host: str | None = None
    port: int = Field(default=502, ge=1, le=65535)
    serial: str | None = None
    baudrate: int = Field(default=9600, gt=0)
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    bytesize: Literal[7, 8] = 8
    device_id: int = Field(default=1, ge=0, le=247)
    timeout: Duration = 1.0
    poll_interval: Duration = 60.0

    @model_validator(mode="after")
    def _tcp_or_rtu(self) -> Self:
        if (self.host is None) == (self.serial is None):
            raise ValueError("give either host (Modbus TCP) or serial (Modbus RTU), not both")
        return self


class SerialPortConfig(Frozen):
    """A serial line printing one reading per line.

    `pattern` is a regular expression with a named group `value` and, when several sensors share
    the line, a named group `sensor` whose text each sensor's `name` is matched against.
    """

    path: str
    baudrate: int = Field(default=9600, gt=0)
    bytesize: Literal[5, 6, 7, 8] = 8
    parity: Literal["N", "E", "O", "M", "S"] = "N"
    stopbits: Literal[1, 2] = 1
    pattern: str = r"^(?P<sensor>[\w.-]+)[\s=:,;]+(?P<value>[-+]?\d+(?:\.\d+)?)"

    @field_validator("pattern")
    @classmethod
    def _pattern_compiles(cls, value: str) -> str:
        try:
            compiled = re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from exc
        if "value" not in compiled.groupindex:
            raise ValueError(
                "the pattern needs a named group 'value', e.g. (?P<value>-?\\d+\\.\\d+)"
            )
        return value


class MqttPoint(Frozen):
    type: Literal["mqtt"]
    broker: Slug | None = None
    topic: str
    format: Literal["plain", "json", "tasmota", "zigbee2mqtt", "shelly", "esphome"] = "plain"
    value_path: str | None = Field(
        default=None, description="dotted path to the value in a JSON payload, e.g. 'temperature'"
    )

    @field_validator("topic")
    @classmethod
    def _topic_is_a_valid_filter(cls, value: str) -> str:
        """A concrete topic, or a pattern with `+` (one level) and a final `#` (the rest), for
        devices whose topic carries a varying part (a serial number, a firmware prefix)."""
        levels = value.split("/")
        if not value or any(
            ("+" in lv and lv != "+") or ("#" in lv and lv != "#") for lv in levels
        ):
            raise ValueError(
                f"{value!r} is not a topic filter: '+' and '#' must fill a whole level"
            )
        if "#" in levels[:-1]:
            raise ValueError(f"{value!r}: '#' may only be the last level")
        return value


class ModbusPoint(Frozen):
    type: Literal["modbus"]
    device: Slug
    address: int = Field(ge=0, le=65535)
    registers: Literal["holding", "input"] = "holding"
    data_type: Literal[
        "int16", "uint16", "int32", "uint32", "float32", "int64", "uint64", "float64"
    ] = "int16"
    word_order: Literal["big", "little"] = "big"
    rollover: float | None = Field(
        default=None,
        gt=0,
        description="a meter's counter: the raw value it wraps at (default: an unsigned "
        "type's range, 4294967296 for uint32); a meter rule counts across the wrap",
    )


class OneWirePoint(Frozen):
    """A DS18B20 on the Pi's 1-Wire bus, read from sysfs (`28-…` device id)."""

    type: Literal["onewire"]
    device: str = Field(pattern=r"^[0-9a-f]{2}-[0-9a-f]{12}$")


class OneWireConfig(Frozen):
    base: Path = Path("/sys/bus/w1/devices")
    poll_interval: Duration = 60.0


class SerialPoint(Frozen):
    type: Literal["serial"]
    port: Slug
    name: str | None = Field(
        default=None, description="text of the pattern's `sensor` group; defaults to the sensor id"
    )


class ManualPoint(Frozen):
    """A sensor no device reads: a meter a person reads and enters (`husvakt readings add`,
    or the form on its site page). Its readings come from the gateway named `manual`."""

    type: Literal["manual"]


#: The gateway id of readings entered by hand (no real gateway may take it).
MANUAL_GATEWAY = "manual"

SourceConfig = Annotated[
    MqttPoint | ModbusPoint | SerialPoint | OneWirePoint | ManualPoint, Field(discriminator="type")
]


class SensorConfig(Frozen):
    """One sensor: where it is, what it measures, and how the gateway reads it."""

    id: Slug
    site: Slug | None = None
    gateway: Slug | None = Field(
        default=None,
        description="the gateway that reads this sensor (default: this file's gateway); the "
        "server refuses the sensor's readings from any other",
    )
    building: Slug | None = None
    room: Slug | None = None
    asset: str | None = None
    tags: tuple[Slug, ...] = ()
    kind: Slug = "temperature"
    unit: Literal[
        "°C",
        "°F",
        "K",
        "%",
        "ppm",
        "lux",
        "hPa",
        "Pa",
        "W",
        "kW",
        "Wh",
        "kWh",
        "MWh",
        "m³",
        "l",
        "bool",
    ] = "°C"
    scale: float = 1.0
    offset: float = 0.0
    probe: Literal["ds18b20"] | None = Field(
        default=None, description="the probe behind a node, so its fault values are recognised"
    )
    source: SourceConfig


class UplinkConfig(MqttBrokerConfig):
    """Where `husvakt gateway` sends readings: an MQTT broker (QoS 1, persistent session), or,
    with `kafka` set, straight to the Kafka readings topic of a scale-out deployment."""

    kafka: str | None = Field(
        default=None, description="Kafka bootstrap servers (host:port,...); MQTT when unset"
    )
    kafka_topic: str = "husvakt-readings"

    batch: int = Field(default=200, ge=1, le=10_000, description="readings per message")
    linger: Duration = Field(
        default=0.02,
        description="how long a message with fewer than `batch` readings waits for more (fewer, "
        "larger messages when busy; 0 = send at once)",
    )
    max_rate: float = Field(default=2000.0, gt=0, description="readings/s when draining a backlog")
    status_every: Duration = 60.0


class OutboxConfig(Frozen):
    """The durable local buffer (SQLite). A relative path is relative to the config file."""

    path: Path = Path("husvakt-outbox.db")
    max_mb: float = Field(default=50.0, gt=0)
    thin_window: Duration = 600.0
    sync_every: Duration = Field(
        default=1.0,
        description="sync the outbox to disk at most this often (group commit, kind to an SD "
        "card); a power cut can lose what was read since the last sync. 0: sync every commit",
    )


class ClockConfig(Frozen):
    """A Pi without a real-time clock: readings taken before its clock syncs are held and
    given their true time when it does (`gateway.timesync`)."""

    sync: str = Field(
        default="auto",
        description="how to tell the clock is synchronised: auto (systemd-timesyncd, else the "
        "kernel where an NTP client runs, else trust it), kernel, off, or a file's path that "
        "exists once synchronised",
    )
    max_hold: Duration = Field(
        default=900.0, description="trust an unsynchronised clock after this long"
    )
    hold: int = Field(default=100_000, ge=1, description="readings held at most")


class GatewayConfig(Frozen):
    """The gateway process: its identity, the connections its sources use, its outbox and
    uplink."""

    id: Slug
    site: Slug
    outbox: OutboxConfig = OutboxConfig()

    @field_validator("id")
    @classmethod
    def _not_the_manual_gateway(cls, value: str) -> str:
        if value == MANUAL_GATEWAY:
            raise ValueError(f"{value!r} is the gateway of readings entered by hand; name yours")
        return value

    uplink: UplinkConfig | None = None
    mqtt_brokers: dict[Slug, MqttBrokerConfig] = Field(default_factory=dict)
    modbus_devices: dict[Slug, ModbusDeviceConfig] = Field(default_factory=dict)
    serial_ports: dict[Slug, SerialPortConfig] = Field(default_factory=dict)
    onewire: OneWireConfig = OneWireConfig()
    clock: ClockConfig = ClockConfig()
    queue_size: int = Field(default=10_000, ge=1)
    quarantine: Path | None = Field(
        default=Path("quarantine.db"),
        description="SQLite file of refused input for `husvakt quarantine` (relative to the "
        "config); null keeps it in memory only",
    )


def sensor_problems(
    sites: tuple[SiteConfig, ...], gateway: GatewayConfig | None, sensors: tuple[SensorConfig, ...]
) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """Cross-references between sites, gateway and sensors, located at the offending field."""
    by_id = {s.id: s for s in sites}
    seen_site_ids: set[str] = set()
    for i, site in enumerate(sites):
        if site.id in seen_site_ids:
            yield ("sites", i, "id"), f"site {site.id!r} is defined twice"
        seen_site_ids.add(site.id)
    if gateway is not None and gateway.site not in by_id:
        yield ("gateway", "site"), f"no site {gateway.site!r} in 'sites'"
    yield from _shared_topics(sensors)
    seen: set[tuple[str, str]] = set()
    for i, sensor in enumerate(sensors):
        site_id = sensor.site or (gateway.site if gateway else None)
        if site_id is None:
            yield ("sensors", i, "site"), "no site given and no gateway site to default to"
            continue
        found = by_id.get(site_id)
        if found is None:
            yield ("sensors", i, "site"), f"no site {site_id!r} in 'sites'"
            continue
        site = found
        if (site_id, sensor.id) in seen:
            yield ("sensors", i, "id"), f"sensor {sensor.id!r} is defined twice at site {site_id!r}"
        seen.add((site_id, sensor.id))
        if sensor.building is not None:
            building, room = site.room(sensor.building, sensor.room)
            if building is None:
                yield (
                    ("sensors", i, "building"),
                    f"site {site_id!r} has no building {sensor.building!r}",
                )
            elif sensor.room is not None and room is None:
                yield (
                    ("sensors", i, "room"),
                    f"building {sensor.building!r} has no room {sensor.room!r}",
                )
        elif sensor.room is not None:
            yield ("sensors", i, "building"), "a room needs its building"
        yield from _source_problems(i, sensor, gateway)


def _shared_topics(
    sensors: tuple[SensorConfig, ...],
) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """Sensors may share a topic (one device message feeds several) only when each reads its
    own value of it."""
    topics: dict[tuple[str | None, str, str, str | None], int] = {}
    for i, sensor in enumerate(sensors):
        source = sensor.source
        if isinstance(source, MqttPoint):
            path = value_path_for(source.format, sensor.kind, source.value_path)
            key = (source.broker, source.topic, source.format, path)
            if key in topics:
                yield (
                    ("sensors", i, "source", "topic"),
                    f"sensors[{topics[key]}] already reads the same value of {source.topic!r} "
                    "(sensors sharing a topic each name their own value_path)",
                )
            topics.setdefault(key, i)


def _source_problems(
    i: int, sensor: SensorConfig, gateway: GatewayConfig | None
) -> Iterator[tuple[tuple[str | int, ...], str]]:
    src = sensor.source
    where: tuple[str | int, ...] = ("sensors", i, "source")
    if gateway is None or sensor.gateway not in (None, gateway.id):
        return  # read by another gateway, whose own file names its connections
    if isinstance(src, MqttPoint):
        if src.broker is None and len(gateway.mqtt_brokers) != 1:
            yield (*where, "broker"), "name the broker (gateway.mqtt_brokers has not exactly one)"
        elif src.broker is not None and src.broker not in gateway.mqtt_brokers:
            yield (*where, "broker"), f"no broker {src.broker!r} in gateway.mqtt_brokers"
        if src.format == "json" and not src.value_path:  # the presets know their path
            yield (*where, "value_path"), "a JSON payload needs value_path (e.g. 'temperature')"
    elif isinstance(src, ModbusPoint):
        if src.device not in gateway.modbus_devices:
            yield (*where, "device"), f"no device {src.device!r} in gateway.modbus_devices"
    elif isinstance(src, SerialPoint) and src.port not in gateway.serial_ports:
        yield (*where, "port"), f"no port {src.port!r} in gateway.serial_ports"
