"""The gateway end to end against real brokers: outages, and kill -9 under load."""

import asyncio
import contextlib
import json
import random
import signal
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime

import aiomqtt
import pytest

from firmware_sim.modbus import ModbusThermometer
from firmware_sim.play import Playback
from firmware_sim.scenario import Scenario
from gateway.clock import ScaledClock, SystemClock
from gateway.config import GatewayConfig, SensorConfig
from gateway.service import run_gateway
from gateway.uplink import readings_topic, status_topic
from husvakt.broker import free_port
from tests.conftest import require_binary
from tests.gateway.test_sources import into
from tests.services import Mosquitto

pytestmark = [pytest.mark.mqtt, pytest.mark.modbus]

START = datetime(2026, 1, 15, 0, 0, tzinfo=UTC)


def steady(value, *, noise=0.0, seed=0, start=START, every=60.0):
    """A PLC's thermometer at `value` °C (± seeded noise) for a day from `start`."""
    signal = {"baseline": value, "noise": noise, "seed": seed}
    scenario = Scenario.single("t", start=start, signal=signal, protocol="modbus", every=every)
    return Playback(scenario.device_outputs(0))


class Receiver:
    """The server side: a persistent QoS 1 subscription that collects uplinked readings."""

    def __init__(self, host, port, topic):
        self.host, self.port, self.topic = host, port, topic
        self.readings = {}  # seq -> reading (duplicates with the same seq are allowed)
        self.order = []
        self.statuses = []
        self.grew = asyncio.Event()

    async def run(self):
        while True:
            try:
                async with aiomqtt.Client(
                    self.host, self.port, identifier="receiver", clean_session=False
                ) as c:
                    await c.subscribe(self.topic, qos=1)
                    await c.subscribe(self.topic.replace("/readings", "/status"), qos=1)
                    async for message in c.messages:
                        body = json.loads(message.payload)
                        if "readings" not in body:
                            self.statuses.append(body)
                            continue
                        for r in body["readings"]:
                            self.readings.setdefault(r["seq"], r)
                            self.order.append(r)
                        self.grew.set()
            except aiomqtt.MqttError:
                await asyncio.sleep(0.1)

    async def wait_for(self, count, timeout=60):
        async def enough():
            while len(self.readings) < count:
                self.grew.clear()
                await self.grew.wait()

        await asyncio.wait_for(enough(), timeout)


def gateway_config(tmp_path, mqtt_port, modbus_ports, **uplink):
    return GatewayConfig.model_validate(
        {
            "id": "pi-1",
            "site": "skolan",
            "modbus_devices": {
                f"dev{i}": {"host": "127.0.0.1", "port": p, "poll_interval": 60, "timeout": 0.5}
                for i, p in enumerate(modbus_ports)
            },
            "outbox": {"path": str(tmp_path / "outbox.db")},
            "quarantine": str(tmp_path / "quarantine.db"),  # not the working directory's
            "uplink": {
                "host": "127.0.0.1",
                "port": mqtt_port,
                "batch": 20,
                "status_every": 1,
                **uplink,
            },
        }
    )


def sensors_for(modbus_ports):
    return [
        SensorConfig.model_validate(
            {
                "id": f"t{i}",
                "site": "skolan",
                "scale": 0.1,
                "source": {"type": "modbus", "device": f"dev{i}", "address": 0},
            }
        )
        for i, _ in enumerate(modbus_ports)
    ]


def assert_complete_and_ordered(receiver, last_seq):
    assert sorted(receiver.readings) == list(range(1, last_seq + 1)), (
        "a committed reading is missing"
    )
    per_sensor = {}
    for r in receiver.order:  # first delivery of each seq, in arrival order
        per_sensor.setdefault(r["sensor"], [])
        if not per_sensor[r["sensor"]] or per_sensor[r["sensor"]][-1]["seq"] < r["seq"]:
            per_sensor[r["sensor"]].append(r)
    for readings in per_sensor.values():
        assert [r["ts"] for r in readings] == sorted(r["ts"] for r in readings)


async def test_every_reading_arrives_in_order_after_the_broker_was_down(tmp_path, mosquitto):
    clock = ScaledClock(start=START, speed=600)  # a 60 s poll every 0.1 s
    ports = [free_port(), free_port()]
    devices = [
        ModbusThermometer(
            host="127.0.0.1",
            port=p,
            clock=clock,
            playback=steady(20.0 + i, noise=0.2, seed=i),
        )
        for i, p in enumerate(ports)
    ]
    for d in devices:
        await d.start()
    receiver = Receiver(mosquitto.host, mosquitto.port, readings_topic("skolan", "pi-1"))
    stop = asyncio.Event()
    config = gateway_config(tmp_path, mosquitto.port, ports)
    async with asyncio.TaskGroup() as tg:
        recv = tg.create_task(receiver.run())
        gw = tg.create_task(
            run_gateway(config=config, sensors=sensors_for(ports), clock=clock, stop=stop)
        )
        await receiver.wait_for(10)
        mosquitto.stop()
        await asyncio.sleep(2)  # an outage of two seconds: about 40 readings buffered meanwhile
        mosquitto.start()
        await receiver.wait_for(len(receiver.readings) + 40)
        stop.set()
        outbox = await gw
        await receiver.wait_for(outbox.stats.last_seq)
        recv.cancel()
    for d in devices:
        await d.stop()
    assert outbox.stats.buffered == 0
    assert_complete_and_ordered(receiver, outbox.stats.last_seq)
    assert receiver.statuses[0]["state"] == "online"
    assert {"buffered", "thinned", "ts", "lag"} <= receiver.statuses[0].keys()


async def test_the_last_will_marks_the_gateway_offline(tmp_path, mosquitto):
    config = gateway_config(tmp_path, mosquitto.port, [], keepalive=5)
    cmd = [
        sys.executable,
        "-c",
        "import asyncio, sys; from gateway.service import run_gateway; from gateway.config import GatewayConfig;"
        "from gateway.clock import SystemClock;"
        f"c = GatewayConfig.model_validate_json({config.model_dump_json()!r});"
        "asyncio.run(run_gateway(config=c, sensors=[], clock=SystemClock(), stop=asyncio.Event()))",
    ]
    proc = subprocess.Popen(cmd)
    statuses = []
    try:
        async with aiomqtt.Client(mosquitto.host, mosquitto.port) as client:
            await client.subscribe(status_topic("skolan", "pi-1"), qos=1)
            async for message in client.messages:
                statuses.append(json.loads(message.payload)["state"])
                if statuses[-1] == "online" and proc.poll() is None:
                    proc.send_signal(signal.SIGKILL)
                if statuses[-1] == "offline":
                    break
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    assert statuses[0] == "online" and statuses[-1] == "offline"


KILL_CONFIG = """
sites: [{{id: skolan, name: Skolan}}]
gateway:
  id: pi-1
  site: skolan
  modbus_devices:
{devices}
  outbox: {{path: {outbox}}}
  uplink: {{host: 127.0.0.1, port: {mqtt}, batch: 50, status_every: 5}}
sensors:
{sensors}
"""  # a Pi's file: its site, gateway and sensors — no teams, no routing


async def test_kill_9_under_load_loses_no_committed_reading(tmp_path, mosquitto):
    # Three devices polled every 20 ms of real time: about 150 readings/s into the gateway.
    clock = SystemClock()
    ports = [free_port() for _ in range(3)]
    devices = [
        ModbusThermometer(
            host="127.0.0.1",
            port=p,
            clock=clock,
            playback=steady(15.0, noise=0.5, seed=i, start=datetime.now(UTC), every=1.0),
        )
        for i, p in enumerate(ports)
    ]
    for d in devices:
        await d.start()
    config = tmp_path / "site.yaml"
    config.write_text(
        KILL_CONFIG.format(
            devices="\n".join(
                f"    dev{i}: {{host: 127.0.0.1, port: {p}, poll_interval: 0.02, timeout: 0.5}}"
                for i, p in enumerate(ports)
            ),
            sensors="\n".join(
                f"  - {{id: t{i}, scale: 0.1, source: {{type: modbus, device: dev{i}, address: 0}}}}"
                for i in range(3)
            ),
            outbox=tmp_path / "outbox.db",
            mqtt=mosquitto.port,
        )
    )
    receiver = Receiver(mosquitto.host, mosquitto.port, readings_topic("skolan", "pi-1"))
    recv = asyncio.create_task(receiver.run())
    rng = random.Random(7)
    cmd = [sys.executable, "-m", "husvakt.cli", "gateway", "--config", str(config)]
    try:
        for _ in range(4):
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            await receiver.wait_for(len(receiver.readings) + 30)
            await asyncio.sleep(rng.uniform(0.05, 0.6))
            proc.send_signal(signal.SIGKILL)
            await asyncio.to_thread(proc.wait)
        # a last, clean run drains what the killed ones left behind
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        await receiver.wait_for(len(receiver.readings) + 30)
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.to_thread(proc.communicate, timeout=60)
        assert proc.returncode == 0, err.decode()
    finally:
        recv.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await recv
        for d in devices:
            await d.stop()
    with contextlib.closing(sqlite3.connect(tmp_path / "outbox.db")) as db:
        (last_seq,) = db.execute("SELECT value FROM meta WHERE key = 'last_seq'").fetchone()
        (left,) = db.execute("SELECT COUNT(*) FROM outbox").fetchone()
    await receiver.wait_for(last_seq - left, timeout=30)
    assert left == 0
    assert_complete_and_ordered(receiver, last_seq)
    assert last_seq > 150


def make_certificates(directory):
    """A CA and a server certificate for 127.0.0.1, made with the openssl command."""
    openssl = require_binary("openssl")

    def run(*args):
        subprocess.run([openssl, *args], check=True, capture_output=True, cwd=directory)

    run(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=husvakt test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
    )
    run(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    )
    (directory / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    run(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "san.ext",
        "-out",
        "server.crt",
    )
    return directory / "ca.crt"


@pytest.fixture
def secure_mosquitto(tmp_path):
    """mosquitto with TLS and a password file; anonymous clients refused."""
    certs = tmp_path / "certs"
    certs.mkdir()
    ca = make_certificates(certs)
    passwd = require_binary("mosquitto_passwd")
    subprocess.run(
        [passwd, "-b", "-c", str(certs / "passwd"), "gw-skolan", "s3cret-pw"], check=True
    )
    port = free_port()
    conf = tmp_path / "secure.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\n"
        f"cafile {ca}\ncertfile {certs / 'server.crt'}\nkeyfile {certs / 'server.key'}\n"
        f"password_file {certs / 'passwd'}\nallow_anonymous false\npersistence false\n"
        "user root\n"  # as root, mosquitto would otherwise drop to a user that cannot read tmp
    )
    broker = Mosquitto(binary=require_binary("mosquitto"), conf=conf, host="127.0.0.1", port=port)
    broker.start()
    try:
        yield broker, ca
    finally:
        broker.stop()


async def test_uplink_over_tls_with_a_password_from_a_file_that_is_never_logged(
    tmp_path, secure_mosquitto, caplog
):
    import ssl

    broker, ca = secure_mosquitto
    (tmp_path / "pw").write_text("s3cret-pw\n")
    clock = ScaledClock(start=START, speed=600)
    port = free_port()
    device = ModbusThermometer(
        host="127.0.0.1",
        port=port,
        clock=clock,
        playback=steady(4.0),
    )
    await device.start()
    config = gateway_config(
        tmp_path,
        broker.port,
        [port],
        username="gw-skolan",
        password_file=str(tmp_path / "pw"),
        tls={"ca_file": str(ca)},
    )
    stop = asyncio.Event()
    got = []
    tls = ssl.create_default_context(cafile=str(ca))
    caplog.set_level("DEBUG")
    try:
        async with aiomqtt.Client(
            broker.host, broker.port, username="gw-skolan", password="s3cret-pw", tls_context=tls
        ) as receiver:
            await receiver.subscribe(readings_topic("skolan", "pi-1"), qos=1)
            task = asyncio.create_task(
                run_gateway(config=config, sensors=sensors_for([port]), clock=clock, stop=stop)
            )
            async for message in receiver.messages:
                got += json.loads(message.payload)["readings"]
                if len(got) >= 5:
                    break
            stop.set()
            await task
    finally:
        await device.stop()
    assert [r["value"] for r in got[:5]] == [4.0] * 5
    assert "s3cret-pw" not in caplog.text


async def test_an_mqtt_source_reads_a_broker_over_tls_with_a_password(tmp_path, secure_mosquitto):
    import ssl

    from gateway.quarantine import Quarantine
    from gateway.service import build_sources

    broker, ca = secure_mosquitto
    (tmp_path / "pw").write_text("s3cret-pw\n")
    config = GatewayConfig.model_validate(
        {
            "id": "pi-1",
            "site": "skolan",
            "quarantine": None,
            "mqtt_brokers": {
                "lan": {
                    "host": broker.host,
                    "port": broker.port,
                    "username": "gw-skolan",
                    "password_file": str(tmp_path / "pw"),
                    "tls": {"ca_file": str(ca)},
                }
            },
        }
    )
    sensor = SensorConfig.model_validate(
        {
            "id": "t1",
            "site": "skolan",
            "source": {"type": "mqtt", "topic": "lan/t1", "format": "esphome"},
        }
    )
    (source,) = build_sources(
        config, [sensor], clock=ScaledClock(start=START, speed=1), quarantine=Quarantine()
    )
    samples = asyncio.Queue()
    task = asyncio.create_task(source.run(into(samples, commit=True)))
    tls = ssl.create_default_context(cafile=str(ca))
    try:
        async with aiomqtt.Client(
            broker.host, broker.port, username="gw-skolan", password="s3cret-pw", tls_context=tls
        ) as device:
            while True:
                await device.publish("lan/t1", b"3.5", qos=1)
                with contextlib.suppress(TimeoutError):
                    got = await asyncio.wait_for(samples.get(), 0.5)
                    break
        assert (got.sensor, got.value) == ("t1", 3.5)
        # a burst through TLS: records of 16 kB, each read whole before the next comes
        async with aiomqtt.Client(
            broker.host, broker.port, username="gw-skolan", password="s3cret-pw", tls_context=tls
        ) as device:
            for i in range(1, 1001):
                await device.publish("lan/t1", f"{i}.0".ljust(100).encode(), qos=1)
        seen = []
        while not seen or seen[-1] != 1000.0:
            if (value := (await asyncio.wait_for(samples.get(), 10)).value) != 3.5:
                seen.append(value)
        assert seen == [float(i) for i in range(1, 1001)]
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
