"""`husvakt doctor --config FILE`: is everything the file names there, and may husvakt use it?

One line per thing — every MQTT broker (connect and log in): the gateway's, its uplink's and,
on a server's file, the one `husvakt stream` subscribes to; Kafka (its brokers answer, and the
topics are there), every Modbus device (connect and read its first configured register),
serial port (there, and readable and writable by this user), 1-Wire probe (its file there and
readable), the case store (open it), the SMTP server (connect and greet, log in when
configured), every webhook and webhook sink, Dynamics 365 and InfluxDB (a connection to their
host) — saying what to fix when it fails. Each check has its own timeout; the exit status is 1
when any failed.
"""

from __future__ import annotations

import asyncio
import os
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from gateway.config import MANUAL_GATEWAY, ModbusDeviceConfig, ModbusPoint, OneWirePoint
from gateway.secrets import read_secret
from husvakt.config import HusvaktConfig

__all__ = ["Finding", "examine"]

TIMEOUT = 5.0


@dataclass(frozen=True)
class Finding:
    ok: bool
    what: str
    detail: str  # what was seen, or what to fix

    def line(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'}  {self.what}: {self.detail}"


Check = Callable[[], Awaitable[str]]


async def _run(what: str, check: Check, fix: str) -> Finding:
    try:
        seen = await asyncio.wait_for(check(), TIMEOUT)
    except TimeoutError:
        return Finding(False, what, f"no answer within {TIMEOUT:g} s — {fix}")
    except Exception as exc:  # noqa: BLE001 - every failure is a finding
        reason = str(exc) or type(exc).__name__
        return Finding(False, what, f"{reason} — {fix}")
    return Finding(True, what, seen)


def _mqtt(broker: object, label: str) -> Check:
    from gateway.mqttclient import BrokerLogin  # noqa: PLC0415

    async def check() -> str:
        login = BrokerLogin.of(broker)  # type: ignore[arg-type]
        async with login.async_client(f"husvakt-doctor-{label}-{os.getpid()}", persistent=False):
            pass
        who = f" as {login.broker.username}" if login.broker.username else ""
        return f"connected to {login.broker.host}:{login.broker.port}{who}"

    return check


def _modbus(device: ModbusDeviceConfig, point: ModbusPoint | None) -> Check:
    from gateway.sources.modbus import modbus_client, read_point  # noqa: PLC0415

    async def check() -> str:
        client = modbus_client(device)
        try:
            if not await client.connect():
                raise ConnectionError("cannot connect")
            if point is None:
                return "connected"
            decoded = await read_point(client, device, "doctor", point)
            if decoded.fault is not None:
                raise RuntimeError(f"the device answered {decoded.fault}")
            return f"read {point.registers} register {point.address}: {decoded.value:g}"
        finally:
            client.close()

    return check


def _usable(path: str) -> str:
    if not os.path.exists(path):
        raise FileNotFoundError(f"no {path}")
    if not os.access(path, os.R_OK | os.W_OK):
        raise PermissionError(f"{path} is not readable and writable by this user")
    return f"{path} is there and usable"


def _serial(path: str) -> Check:
    async def check() -> str:
        return await asyncio.to_thread(_usable, path)

    return check


def _read(path: Path) -> str:
    if not path.exists():
        raise FileNotFoundError(f"no {path}")
    return f"{path} reads {len(path.read_text(encoding='ascii', errors='replace'))} characters"


def _file(path: Path) -> Check:
    async def check() -> str:
        return await asyncio.to_thread(_read, path)

    return check


def _store(config: HusvaktConfig) -> Check:
    async def check() -> str:
        from casebridge.store.sql import open_store  # noqa: PLC0415

        store = open_store(config.cases)
        try:
            await store.start()
            count = await store.count_cases()
        finally:
            await store.aclose()
        return f"{store.description} is open ({count} cases)"

    return check


def _smtp(smtp: object) -> Check:
    async def check() -> str:
        import aiosmtplib  # noqa: PLC0415

        client = aiosmtplib.SMTP(
            hostname=smtp.host,  # type: ignore[attr-defined]
            port=smtp.port,  # type: ignore[attr-defined]
            timeout=TIMEOUT,
            start_tls=smtp.starttls,  # type: ignore[attr-defined]
        )
        await client.connect()
        try:
            if smtp.username:  # type: ignore[attr-defined]
                password = read_secret(smtp.password_file)  # type: ignore[attr-defined]
                await client.login(smtp.username, password or "")  # type: ignore[attr-defined]
        finally:
            client.close()
        return f"{smtp.host}:{smtp.port} greets"  # type: ignore[attr-defined]

    return check


def _webhook(url: str) -> Check:
    async def check() -> str:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        context = ssl.create_default_context() if parts.scheme == "https" else None
        _, writer = await asyncio.open_connection(
            parts.hostname, port, ssl=context, server_hostname=parts.hostname if context else None
        )
        writer.close()
        await writer.wait_closed()
        return f"{parts.hostname}:{port} accepts connections"

    return check


def _kafka(bootstrap: str, topics: list[str], *, makes_them: bool) -> Check:
    """Kafka's brokers answer and `topics` are there (`makes_them`: the command makes any
    that are not, so their absence is no failure)."""

    async def check() -> str:
        try:
            from stream.kafka_admin import existing_topics  # noqa: PLC0415 - an optional extra
        except ImportError as exc:
            raise RuntimeError("the kafka extra is not installed") from exc
        existing = await existing_topics(bootstrap, timeout_ms=int(TIMEOUT * 1000))
        missing = [t for t in topics if t not in existing]
        if not missing:
            return f"{bootstrap} answers; {', '.join(topics)} there"
        if not makes_them:
            raise LookupError(f"{bootstrap} has no topic {', '.join(missing)}")
        return f"{bootstrap} answers; husvakt stream makes {', '.join(missing)}"

    return check


FIX_MQTT = "check host, port, username, password_file and TLS"
FIX_STREAM = "check stream.broker: host, port, credentials, TLS"
FIX_KAFKA = (
    "check the bootstrap servers (pip install 'husvakt[kafka]'); husvakt stream --engine "
    "faust makes the topics"
)
FIX_SINK = "check the sink's url and the firewall"
FIX_INFLUX = "check stream.influx.url and the firewall"
FIX_UPLINK = "check gateway.uplink: host, port, credentials, TLS"
FIX_MODBUS = "check the address, the device id, the wiring and the register"
FIX_SERIAL = "check the path, and that this user is in the dialout group"
FIX_W1 = "check dtoverlay=w1-gpio in /boot/firmware/config.txt and the probe's id"
FIX_STORE = "check cases.sqlite's directory or cases.url and the database's rights"
FIX_SMTP = "check notify.smtp: host, port, starttls, username, password_file"
FIX_WEBHOOK = "check the team's webhook url and the firewall"

Planned = list[tuple[str, Check, str]]


def _gateway_checks(config: HusvaktConfig) -> Planned:
    gw = config.gateway
    if gw is None:
        return []
    planned: Planned = [
        (f"mqtt broker {name}", _mqtt(broker, name), FIX_MQTT)
        for name, broker in gw.mqtt_brokers.items()
    ]
    if gw.uplink is not None and gw.uplink.kafka is None:
        planned.append(("uplink broker", _mqtt(gw.uplink, "uplink"), FIX_UPLINK))
    elif gw.uplink is not None and gw.uplink.kafka is not None:
        check = _kafka(gw.uplink.kafka, [gw.uplink.kafka_topic], makes_them=False)
        planned.append(("uplink kafka", check, FIX_KAFKA))
    first: dict[str, ModbusPoint] = {}
    for sensor in config.sensors:
        if isinstance(sensor.source, ModbusPoint):
            first.setdefault(sensor.source.device, sensor.source)
    for name, device in gw.modbus_devices.items():
        where = device.serial or f"{device.host}:{device.port}"
        check = _modbus(device, first.get(name))
        planned.append((f"modbus device {name} ({where})", check, FIX_MODBUS))
    planned += [
        (f"serial port {name}", _serial(port.path), FIX_SERIAL)
        for name, port in gw.serial_ports.items()
    ]
    planned += [
        (f"1-wire probe {s.id}", _file(gw.onewire.base / s.source.device / "w1_slave"), FIX_W1)
        for s in config.sensors
        if isinstance(s.source, OneWirePoint)
    ]
    return planned


def _server_checks(config: HusvaktConfig) -> Planned:
    if not config.routing:
        return []  # a gateway's file: no cases here
    planned: Planned = [("case store", _store(config), FIX_STORE)]
    stream = config.stream
    if config.gateway is None:  # a server's file: husvakt stream takes the uplinks there
        planned.append(("stream broker", _mqtt(stream.broker, "stream"), FIX_STREAM))
    if stream.engine == "faust":
        from stream.kafka_admin import topic_names  # noqa: PLC0415 - an optional extra

        check = _kafka(stream.kafka.bootstrap, topic_names(stream.kafka), makes_them=True)
        planned.append(("stream kafka", check, FIX_KAFKA))
    if stream.influx is not None:
        planned.append(("influxdb", _webhook(stream.influx.url), FIX_INFLUX))
    planned += [(f"sink {sink.id}", _webhook(sink.url), FIX_SINK) for sink in config.sinks]
    if config.notify.smtp is not None:
        planned.append(("smtp server", _smtp(config.notify.smtp), FIX_SMTP))
    planned += [
        (f"webhook of team {team.id}", _webhook(team.webhook.url), FIX_WEBHOOK)
        for team in config.teams
        if team.webhook is not None
    ]
    return planned


async def examine(config: HusvaktConfig, *, cases: bool) -> list[Finding]:
    """Every check the config calls for, run concurrently, in the config's order."""
    planned = _gateway_checks(config) + (_server_checks(config) if cases else [])
    found = await asyncio.gather(*(_run(what, check, fix) for what, check, fix in planned))
    manual = [s.id for s in config.sensors if config.gateway_of(s) == MANUAL_GATEWAY]
    if manual:
        found.append(Finding(True, "read by hand", ", ".join(manual)))
    return list(found)
