"""Nothing may silence husvakt: every class of hostile input, sent over a real mosquitto to
`husvakt stream`, is quarantined and counted, the process lives, and a genuine freezing reading
sent next opens its case — also after a restart with hostile messages waiting in the session."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from datetime import UTC, datetime

import aiomqtt
import pytest

from casebridge.store.sql import SqlCaseStore, SqliteCaseStore
from gateway.clock import SystemClock
from gateway.config import MqttBrokerConfig
from gateway.quarantine import Quarantine, SqliteQuarantine
from gateway.wire import readings_topic
from husvakt.cli import main
from husvakt.config import load_config
from husvakt.hostile import _case_for, check, corpus, genuine_frost, with_probes
from husvakt.server import EmbeddedServer
from stream.engine import hand_off
from stream.models import Alarm
from tests.husvakt.test_run import open_cases
from tests.stream.faust_helpers import SCHOOL

pytestmark = [pytest.mark.mqtt, pytest.mark.e2e, pytest.mark.timeout(600)]


async def test_every_class_of_hostile_input_is_quarantined_and_the_next_frost_opens_its_case(
    mosquitto, tmp_path, capsys
):
    tally = await check(
        config_path=SCHOOL, broker=(mosquitto.host, mosquitto.port), directory=tmp_path
    )
    assert tally.failures == []
    assert tally.tried == tally.handled
    assert len(tally.tried) >= 20
    # what was refused is on disk for the admin, by reason
    assert main(["quarantine", "list", "--db", str(tmp_path / "quarantine.db"), "--json"]) == 0
    reasons = {e["reason"] for e in json.loads(capsys.readouterr().out)}
    assert {
        "uplink-too-deep",
        "uplink-number",
        "reading-timestamp",
        "reading-string",
        "reading-number",
        "unknown-sensor",
        "unknown-gateway",
        "clock-ahead",
        "seq-jump",
        "wrong-kind",
    } <= reasons


def _server(config, tmp_path, store):
    stream = config.stream.model_copy(
        update={
            "client_id": "stream-under-test",
            "state": tmp_path / "rules.db",
            "quarantine": tmp_path / "quarantine.db",
        }
    )
    return EmbeddedServer(
        config=config.model_copy(update={"stream": stream}), clock=SystemClock(), store=store
    )


async def _running(server):
    stop = asyncio.Event()
    task = asyncio.create_task(server.run(stop))
    await asyncio.wait_for(server.subscriber.subscribed.wait(), 30)
    return stop, task


async def test_hostile_messages_waiting_in_the_session_do_not_kill_the_stream_on_restart(
    mosquitto, tmp_path
):
    config, probes = with_probes(load_config(SCHOOL), 4)
    stream = config.stream.model_copy(
        update={"broker": MqttBrokerConfig(host=mosquitto.host, port=mosquitto.port)}
    )
    config = config.model_copy(update={"stream": stream})
    store = SqliteCaseStore(tmp_path / "cases.db")
    await store.start()
    # a first start creates the persistent session; then the stream is down
    stop, task = await _running(_server(config, tmp_path, store))
    stop.set()
    await task
    now = datetime.now(UTC)
    waiting = list(corpus("nordskolan", "pi-basement", probes[0], now=now))
    waiting = [
        h
        for h in waiting
        if h.kind
        in ("deeply nested JSON", "timestamp overflow", "NUL and control characters", "not UTF-8")
    ]
    async with aiomqtt.Client(mosquitto.host, mosquitto.port, identifier="gw") as client:
        for hostile in waiting:
            await client.publish(hostile.topic, hostile.payload, qos=1)
        await client.publish(
            readings_topic("nordskolan", "pi-basement"),
            genuine_frost("nordskolan", "pi-basement", probes[1], now=now, seq=10),
            qos=1,
        )
    for attempt in range(2):  # the second restart finds nothing left to redeliver
        server = _server(config, tmp_path, store)
        stop, task = await _running(server)
        try:
            await asyncio.wait_for(_case_for(store, "nordskolan", probes[1]), 30)
            if attempt == 0:
                assert server.quarantine.total >= len(waiting)
            else:
                async with aiomqtt.Client(mosquitto.host, mosquitto.port) as client:
                    await client.publish(
                        readings_topic("nordskolan", "pi-basement"),
                        genuine_frost("nordskolan", "pi-basement", probes[2], now=now, seq=11),
                        qos=1,
                    )
                await asyncio.wait_for(_case_for(store, "nordskolan", probes[2]), 30)
                assert server.quarantine.total == 0  # nothing was delivered twice
        finally:
            stop.set()
            await task
    await store.aclose()


def _alarm(sensor: str, reason: str | None = None) -> Alarm:
    now = datetime.now(UTC)
    return Alarm(
        episode=f"sensor-fault:nordskolan:{sensor}:1",
        site="nordskolan",
        sensor=sensor,
        condition="sensor_fault",
        state="raised",
        severity="warning",
        value=0.0,
        threshold=3.0,
        rule="sensor-fault",
        started_at=now,
        ts=now,
        reason=reason,
    )


@pytest.mark.postgres
async def test_an_alarm_postgresql_cannot_store_is_quarantined_and_the_next_one_is_recorded(
    postgres_url, tmp_path
):
    config = load_config(SCHOOL)
    store = SqlCaseStore.from_url(postgres_url)
    await store.start()
    try:
        server = _server(config, tmp_path, store)
        quarantine = Quarantine(store=SqliteQuarantine(tmp_path / "q.db"))
        # PostgreSQL refuses NUL in text (the wire refuses it before; this proves the last line)
        bad = _alarm("basement-t1", reason="3 fault readings in a row (crc\x00)")
        assert not await hand_off([bad], server.bridge.handle_many, quarantine)
        assert await hand_off([_alarm("boiler-t1")], server.bridge.handle_many, quarantine)
        assert [c.sensor for c in await store.list_cases()] == ["boiler-t1"]
        assert quarantine.counts == {"alarm-unrecorded": 1}
        quarantine.flush()
        (entry,) = SqliteQuarantine(tmp_path / "q.db").entries()
        assert entry.source == "nordskolan/basement-t1/sensor_fault"
    finally:
        await store.aclose()


GATEWAY_CONFIG = """
sites: [{{id: skolan, name: Skolan, buildings: [{{id: a, rooms: [{{id: r, name: Room}}]}}]}}]
gateway:
  id: pi
  site: skolan
  mqtt_brokers: {{local: {{host: {mqtt_host}, port: {mqtt_port}}}}}
  modbus_devices: {{plc: {{host: 127.0.0.1, port: {modbus_port}, poll_interval: 0.2s, timeout: 0.5s}}}}
  serial_ports: {{line: {{path: {serial}}}}}
  outbox: {{path: {tmp}/outbox.db}}
  quarantine: {tmp}/quarantine.db
sensors:
  - {{id: json-t1, building: a, room: r, source: {{type: mqtt, topic: s/json-t1, format: json, value_path: temperature}}}}
  - {{id: line-t1, building: a, room: r, source: {{type: serial, port: line, name: T1}}}}
  - {{id: plc-t1, building: a, room: r, scale: 0.1, source: {{type: modbus, device: plc, address: 0}}}}
  - {{id: leak-1, building: a, room: r, kind: water_leak, unit: bool, source: {{type: mqtt, topic: s/leak, format: zigbee2mqtt}}}}
{probes}
rules:
  - {{id: probe-frost, condition: freezing, tag: probe, below: 5, clear: 7, hold: 0}}
  - {{id: leak, condition: leak, kind: water_leak, state: on, title: {{en: Water leak}}}}
teams: [{{id: larm, name: Alarm centre}}]
routing: [{{id: all, team: larm, priority: P1}}]
stream: {{state: {tmp}/rules.db}}
cases: {{sqlite: {tmp}/cases.db}}
"""

#: What devices and wiring send a gateway: each must become a fault reading of its sensor or a
#: quarantined input, never a crash, never a wrong number.
SENSOR_PAYLOADS = [
    ("deeply nested JSON", b"[" * 60_000),
    ("a number with 5,000 digits", b'{"temperature": 1' + b"0" * 5000 + b"}"),
    ("NaN, Infinity, 1e309", b'{"temperature": NaN}'),
    ("NaN, Infinity, 1e309", b'{"temperature": 1e309}'),
    ("NaN, Infinity, 1e309", b'{"temperature": "inf"}'),
    ("bool as a number", b'{"temperature": true}'),
    ("an on/off state as a temperature", b'{"temperature": false}'),
    ("an on/off state as a temperature", b'{"temperature": "OFF"}'),
    ("not UTF-8", b"\xff\xfe\x00"),
    ("too large", b" " * 100_000),
    ("larger than many reads of the socket", b" " * (3 * 1024 * 1024)),
    ("wrong shape", b'{"temperature": {"value": [1, 2]}}'),
    ("empty payload", b""),
]
#: Bad messages sent back to back to one sensor's topic (after the payloads above)
FLOOD = 10_000
#: What an on/off sensor (a zigbee2mqtt leak detector) may be sent: never a leak, never a crash.
LEAK_PAYLOADS = [
    ("deeply nested JSON", b'{"water_leak": ' + b"[" * 60_000),
    ("a number that is no state", b'{"water_leak": 0.5}'),
    ("a number that is no state", b'{"water_leak": 2}'),
    ("a word that is no state", b'{"water_leak": "ONN"}'),
    ("a state in a list", b'{"water_leak": [true]}'),
    ("NUL in a state", b'{"water_leak": "ON\\u0000"}'),
    ("lone surrogate", b'{"water_leak": "\\ud800"}'),
    ("NaN, Infinity, 1e309", b'{"water_leak": 1e309}'),
    ("too large", b'{"water_leak": true, "x": "' + b"y" * 70_000 + b'"}'),
    ("another key", b'{"contact": true}'),
]
SERIAL_LINES = [
    ("NaN, Infinity, 1e309", b"T1=1e309\n"),
    ("NaN, Infinity, 1e309", b"T1=nan\n"),
    ("NaN, Infinity, 1e309", b"T1=-inf\n"),
    ("exponent", b"T1=2.5e1\n"),
    ("NUL and control characters", b"\x00\x7f#@!\x1b[2J\n"),
    ("too long a line", b"T1=" + b"9" * 6000 + b"\n"),
    ("sensors not in the config", b"GHOST=1.0\n"),
]


@pytest.mark.serial
@pytest.mark.modbus
async def test_the_gateway_survives_hostile_sensor_payloads_lines_and_registers(
    mosquitto, tmp_path
):
    from gateway.outbox import SqliteOutbox
    from husvakt.allinone import AllInOne
    from husvakt.broker import free_port
    from tests.gateway.test_sources import pty_pair

    count = len(SENSOR_PAYLOADS) + len(LEAK_PAYLOADS) + len(SERIAL_LINES) + 3
    probes = "\n".join(
        f"  - {{id: probe-{i:02d}, building: a, room: r, tags: [probe], "
        f"source: {{type: mqtt, topic: probes/{i:02d}}}}}"
        for i in range(count)
    )
    modbus_port = free_port()
    plc = _wild_plc(modbus_port)
    await plc.start()
    with pty_pair() as (master, serial_path):
        text = GATEWAY_CONFIG.format(
            mqtt_host=mosquitto.host,
            mqtt_port=mosquitto.port,
            modbus_port=modbus_port,
            serial=serial_path,
            tmp=tmp_path,
            probes=probes,
        )
        config = load_config(_written(tmp_path / "site.yaml", text))
        store = SqliteCaseStore(tmp_path / "cases.db")
        await store.start()
        outbox = SqliteOutbox(tmp_path / "outbox.db")
        await outbox.open()
        runtime = AllInOne(config=config, clock=SystemClock(), store=store, outbox=outbox)
        stop = asyncio.Event()
        task = asyncio.create_task(runtime.run(stop))
        probes = iter(range(count))
        failures = []

        async def genuine_frost_gets_through(kind):
            if not await _frost_opens_a_case(mosquitto, store, next(probes), task):
                failures.append(f"{kind}: no case")

        try:
            await genuine_frost_gets_through("start")
            async with aiomqtt.Client(mosquitto.host, mosquitto.port) as device:
                failures += await _hostile_to_a_thermometer(
                    device, runtime, genuine_frost_gets_through
                )
                failures += await _hostile_to_a_leak_detector(
                    device, runtime, store, genuine_frost_gets_through
                )
            for kind, line in SERIAL_LINES:
                before = runtime.gateway.counts["fault"] + runtime.gateway.quarantine.total
                os.write(master, line)
                await genuine_frost_gets_through(kind)
                if runtime.gateway.counts["fault"] + runtime.gateway.quarantine.total == before:
                    failures.append(f"{kind}: neither a fault reading nor quarantined")
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)
            await store.aclose()
            await outbox.close()
            await plc.stop()
    assert failures == []
    assert not task.exception()
    faults = {(c.sensor, c.condition) for c in await open_cases(tmp_path / "cases.db")}
    # no hostile input became a temperature: no freezing or fire on the attacked sensors
    assert not {s for s, cond in faults if cond in ("freezing", "fire")} & {
        "json-t1",
        "line-t1",
        "plc-t1",
    }
    assert runtime.gateway.counts["fault"] >= 10  # the wild register and the bad lines


def _wild_plc(port):
    """A PLC whose register goes wild — 0x7FFF and 0x8000 (±3276.8 °C) — between 20 °C."""
    from firmware_sim.modbus import ModbusThermometer
    from firmware_sim.play import Playback
    from firmware_sim.scenario import Scenario

    night = Scenario.single(
        "plc-t1",
        start=datetime.now(UTC),
        signal={"baseline": 20.0},
        protocol="modbus",
        every=0.25,
        timeline=[
            {"at": 0.5, "fault": "spike", "value": 3276.7, "for": 1},
            {"at": 2, "fault": "spike", "value": -3276.8, "for": 1},
        ],
    )
    return ModbusThermometer(
        host="127.0.0.1",
        port=port,
        clock=SystemClock(),
        playback=Playback(night.device_outputs(0)),
    )


def _written(path, text):
    path.write_text(text, encoding="utf-8")
    return path


async def _hostile_to_a_thermometer(device, runtime, genuine_frost_gets_through):
    """Each hostile payload to a thermometer is quarantined, and so is each of a flood of bad
    messages (read from the socket in one go); a genuine frost gets through after each."""
    failures = []
    for kind, payload in SENSOR_PAYLOADS:
        before = runtime.gateway.quarantine.total
        await device.publish("s/json-t1", payload, qos=1)
        await genuine_frost_gets_through(kind)
        if runtime.gateway.quarantine.total == before:
            failures.append(f"{kind}: not quarantined")
    before = runtime.gateway.quarantine.total
    for _ in range(FLOOD):
        await device.publish("s/json-t1", b'{"temperature": ', qos=1)
    await genuine_frost_gets_through("a flood of bad messages")
    if (flooded := runtime.gateway.quarantine.total - before) < FLOOD:
        failures.append(f"flood: {flooded} of {FLOOD} quarantined")
    return failures


async def _hostile_to_a_leak_detector(device, runtime, store, genuine_frost_gets_through):
    """Each hostile payload to an on/off sensor is a fault or quarantined and opens no leak
    case, a genuine frost gets through after each, and a genuine leak still opens its case."""
    failures = []
    for kind, payload in LEAK_PAYLOADS:
        before = runtime.gateway.counts["fault"] + runtime.gateway.quarantine.total
        await device.publish("s/leak", payload, qos=1)
        await genuine_frost_gets_through(f"leak detector: {kind}")
        if runtime.gateway.counts["fault"] + runtime.gateway.quarantine.total == before:
            failures.append(f"leak detector: {kind}: neither a fault nor quarantined")

    def leaks(cases):
        return [c for c in cases if (c.sensor, c.condition) == ("leak-1", "leak")]

    if leaks(await store.list_cases()):  # a sensor_fault case is right, a leak is not
        failures.append("a hostile payload opened a leak case")
    await device.publish("s/leak", b'{"battery": 90, "water_leak": true}', qos=1)
    for _ in range(600):
        if leaks(await store.list_cases()):
            return failures
        await asyncio.sleep(0.05)  # another task writes the store: look again
    return [*failures, "a genuine leak opened no case"]


async def _frost_opens_a_case(broker, store, i, task):
    """Publish 1 °C on probe `i` until its case is open (the first time, until the source has
    subscribed); False if the runtime stopped or nothing came of it."""
    async with aiomqtt.Client(broker.host, broker.port) as client:
        for _ in range(300):
            await client.publish(f"probes/{i:02d}", b"1.0", qos=1)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(_case_for(store, "skolan", f"probe-{i:02d}"), 0.5)
                return True
            if task.done():
                return False
    return False
