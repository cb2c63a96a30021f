"""Each source against a real peer: mosquitto, a pymodbus server, a pseudo-terminal."""

import asyncio
import collections
import contextlib
import itertools
import json
import os
import subprocess
import time
import tty
from datetime import UTC, datetime, timedelta

import aiomqtt
import pytest

from firmware_sim.modbus import Layout, ModbusThermometer
from firmware_sim.play import Playback
from firmware_sim.scenario import Scenario
from gateway.clock import ScaledClock
from gateway.config import (
    ModbusDeviceConfig,
    ModbusPoint,
    MqttBrokerConfig,
    MqttPoint,
    SensorConfig,
    SerialPortConfig,
)
from gateway.mqttack import puback_packets
from gateway.mqttloop import READ
from gateway.quarantine import Quarantine
from gateway.sources.modbus import ModbusSource
from gateway.sources.mqtt import MqttSource
from gateway.sources.serial import SerialSource
from husvakt.broker import free_port
from tests.conftest import require_binary

START = datetime(2026, 1, 15, 0, 0, tzinfo=UTC)


@contextlib.asynccontextmanager
async def running(source, *, commit=True):
    """Run a source; yield the queue its samples land in. With `commit`, each sample is taken
    as committed to the outbox at once (an MQTT source then acknowledges its message)."""
    samples: asyncio.Queue = asyncio.Queue()
    task = asyncio.create_task(source.run(into(samples, commit=commit)))
    try:
        yield samples
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def into(queue, *, commit=False):
    """An emit that puts each sample a source hands on into `queue` (with `commit`, taken as
    committed to the outbox: an MQTT source acknowledges its message, and the broker sends
    more than its in-flight window)."""

    async def emit(batch):
        for sample in batch:
            await queue.put(sample)
            if commit and sample.committed is not None:
                sample.committed()

    return emit


async def next_sample(samples, timeout=10.0):
    return await asyncio.wait_for(samples.get(), timeout)


@pytest.mark.mqtt
async def test_mqtt_source_decodes_each_sensor_and_marks_bad_payloads(mosquitto):
    quarantine = Quarantine()
    source = MqttSource(
        name="mqtt:test",
        broker=MqttBrokerConfig(host=mosquitto.host, port=mosquitto.port),
        points={
            "s/json": (
                "t-json",
                MqttPoint(type="mqtt", topic="s/json", format="json", value_path="temperature"),
            ),
            "s/plain": ("t-plain", MqttPoint(type="mqtt", topic="s/plain")),
        },
        clock=ScaledClock(start=START, speed=1),
        quarantine=quarantine,
        client_id="gw-test",
    )
    async with running(source) as samples, aiomqtt.Client(mosquitto.host, mosquitto.port) as device:
        # The subscription is in place once a retained-free probe comes back; publish until it does.
        while True:
            await device.publish("s/plain", b"21.5", qos=1)
            with contextlib.suppress(TimeoutError):
                first = await next_sample(samples, timeout=0.5)
                break
        assert (first.sensor, first.value, first.fault) == ("t-plain", 21.5, None)
        for payload in (b'{"temperature": 4.25}', b'{"temperature": NaN}', b"{oops"):
            await device.publish("s/json", payload, qos=1)
        got = [await next_sample(samples) for _ in range(3)]
    assert [(s.sensor, s.value, s.fault) for s in got] == [
        ("t-json", 4.25, None),
        ("t-json", None, "not-finite"),
        ("t-json", None, "unparsable"),
    ]
    assert quarantine.counts == {"mqtt-not-finite": 1, "mqtt-unparsable": 1}


@pytest.mark.mqtt
async def test_mqtt_source_comes_back_after_a_broker_outage(mosquitto):
    source = MqttSource(
        name="mqtt:test",
        broker=MqttBrokerConfig(host=mosquitto.host, port=mosquitto.port),
        points={"s/t": ("t1", MqttPoint(type="mqtt", topic="s/t"))},
        clock=ScaledClock(start=START, speed=1),
        quarantine=Quarantine(),
        client_id="gw-outage",
    )

    async def publish_until_received(samples, value):
        while True:
            with contextlib.suppress(aiomqtt.MqttError):
                async with aiomqtt.Client(mosquitto.host, mosquitto.port) as device:
                    await device.publish("s/t", str(value).encode(), qos=1)
            with contextlib.suppress(TimeoutError):
                return await next_sample(samples, timeout=0.5)

    async with running(source) as samples:
        assert (await publish_until_received(samples, 1.5)).value == 1.5
        mosquitto.stop()
        mosquitto.start()
        assert (await asyncio.wait_for(publish_until_received(samples, 2.5), 30)).value == 2.5


def steady(value=21.5, timeline=()):
    """A PLC's thermometer at `value` °C for a day from START, with the faults of `timeline`."""
    scenario = Scenario.single(
        "t", start=START, signal={"baseline": value}, protocol="modbus", timeline=timeline
    )
    return Playback(scenario.device_outputs(0))


@pytest.mark.modbus
async def test_modbus_source_polls_registers_on_schedule():
    clock = ScaledClock(start=START, speed=600)  # 60 s poll interval = 0.1 s
    port = free_port()
    device = ModbusThermometer(
        host="127.0.0.1", port=port, playback=steady(-3.5), clock=clock, address=4
    )
    await device.start()
    try:
        source = ModbusSource(
            name="modbus:test",
            devices=[
                (
                    ModbusDeviceConfig(host="127.0.0.1", port=port, poll_interval=60, timeout=1),
                    [("t1", ModbusPoint(type="modbus", device="d", address=4))],
                )
            ],
            clock=clock,
        )
        async with running(source) as samples:
            got = [await next_sample(samples) for _ in range(3)]
    finally:
        await device.stop()
    assert [(s.sensor, s.value, s.fault) for s in got] == [("t1", -35.0, None)] * 3  # raw tenths
    gaps = [(b.ts - a.ts).total_seconds() for a, b in itertools.pairwise(got)]
    assert all(50 <= g <= 70 for g in gaps), gaps


@pytest.mark.modbus
async def test_a_meters_wide_counter_is_read_over_modbus_in_its_word_order_and_wraps():
    # An energy meter's uint32 counter, least significant word first, about to pass 2^32:
    # read over real Modbus TCP, and counted across the wrap by a meter rule.
    from stream.kinds.meter import Counter, MeterRule

    clock = ScaledClock(start=START, speed=600)
    top = 2**32
    scenario = Scenario.single(
        "e1", start=START, protocol="modbus",
        signal={"points": [[0, top - 3000], [86400, top + 86400 * 50 - 3000]]},
    )  # fmt: skip
    port = free_port()
    device = ModbusThermometer(
        host="127.0.0.1",
        port=port,
        playback=Playback(scenario.device_outputs(0)),
        clock=clock,
        address=10,
        layout=Layout("uint32", "little", 1.0),
    )
    await device.start()
    point = ModbusPoint(
        type="modbus", device="d", address=10, data_type="uint32", word_order="little"
    )
    try:
        source = ModbusSource(
            name="modbus:meter",
            devices=[
                (
                    ModbusDeviceConfig(host="127.0.0.1", port=port, poll_interval=30, timeout=1),
                    [("e1", point)],
                )
            ],
            clock=clock,
        )
        async with running(source) as samples:
            got = [await next_sample(samples) for _ in range(6)]
    finally:
        await device.stop()
    values = [s.value for s in got]
    assert all(s.fault is None for s in got)
    assert values[0] > 2**31 and values[-1] < 2**16  # read whole, then wrapped to the bottom
    sensor = SensorConfig(id="e1", kind="energy", unit="Wh", source=point)
    row = MeterRule(id="m", condition="use", kind="energy", meter="stopped").bound("UTC", sensor)
    assert row.rollover == top  # the point's type says where its counter wraps
    counter = Counter()
    counted = sum(counter.step(v, row.rollover) for v in values)
    assert counted == values[-1] + top - values[0] > 0  # the wrap counted, nothing invented


@pytest.mark.modbus
async def test_modbus_exceptions_and_a_dead_device_become_faults_and_recovery_is_automatic():
    clock = ScaledClock(start=START, speed=600)
    port = free_port()
    broken = steady(timeline=[{"at": 0, "fault": "modbus-exception", "for": 86400}])
    source = ModbusSource(
        name="modbus:test",
        devices=[
            (
                ModbusDeviceConfig(host="127.0.0.1", port=port, poll_interval=60, timeout=0.5),
                [("t1", ModbusPoint(type="modbus", device="d", address=0))],
            )
        ],
        clock=clock,
    )
    async with running(source) as samples:
        dead = await next_sample(samples)
        assert dead.fault == "modbus-unreachable"
        device = ModbusThermometer(host="127.0.0.1", port=port, playback=broken, clock=clock)
        await device.start()
        try:
            while (s := await next_sample(samples)).fault == "modbus-unreachable":
                pass
            assert s.fault == "modbus-exception-4"
        finally:
            await device.stop()
        healthy = ModbusThermometer(host="127.0.0.1", port=port, playback=steady(20.0), clock=clock)
        await healthy.start()
        try:
            while (s := await next_sample(samples)).fault is not None:
                pass
            assert s.value == 200.0
        finally:
            await healthy.stop()


@contextlib.contextmanager
def pty_pair():
    master, slave = os.openpty()
    tty.setraw(slave)
    try:
        yield master, os.ttyname(slave)
    finally:
        for fd in (master, slave):
            with contextlib.suppress(OSError):
                os.close(fd)


async def until_open(write, samples, probe=b"T1 0.0\n"):
    """Opening a serial port discards what was sent before, so probe until the source reads."""
    while True:
        write(probe)
        with contextlib.suppress(TimeoutError):
            return await next_sample(samples, timeout=0.3)


@pytest.mark.serial
async def test_serial_source_maps_lines_to_sensors_and_quarantines_garbage():
    quarantine = Quarantine()
    with pty_pair() as (master, path):
        source = SerialSource(
            name="serial:test",
            port=SerialPortConfig(path=path),
            sensors={"T1": "kitchen-t1", "T2": "hall-t1"},
            clock=ScaledClock(start=START, speed=1),
            quarantine=quarantine,
        )
        async with running(source) as samples:
            await until_open(lambda b: os.write(master, b), samples)
            while not samples.empty():
                samples.get_nowait()
            os.write(
                master,
                b"T1 4.25\r\nnoise\x00\xff\r\nT9 3.0\r\n\r\nT2=-1.5\n" + b"x" * 5000 + b"\nT1 5\n",
            )
            got = [await next_sample(samples) for _ in range(3)]
    assert [(s.sensor, s.value) for s in got] == [
        ("kitchen-t1", 4.25),
        ("hall-t1", -1.5),
        ("kitchen-t1", 5.0),
    ]
    assert quarantine.counts == {
        "serial-unparsable": 1,
        "serial-unknown-sensor": 1,
        "serial-line-too-long": 1,
    }


@pytest.mark.serial
async def test_a_one_sensor_serial_port_reports_unparsable_lines_as_faults():
    with pty_pair() as (master, path):
        source = SerialSource(
            name="serial:test",
            port=SerialPortConfig(path=path, pattern=r"^(?P<value>[-+]?\d+\.\d+)$"),
            sensors={"": "attic-t1"},
            clock=ScaledClock(start=START, speed=1),
            quarantine=Quarantine(),
        )
        async with running(source) as samples:
            await until_open(lambda b: os.write(master, b), samples, probe=b"0.0\n")
            while not samples.empty():
                samples.get_nowait()
            os.write(master, b"12.50\nERR\n")
            got = [await next_sample(samples) for _ in range(2)]
    assert [(s.sensor, s.value, s.fault) for s in got] == [
        ("attic-t1", 12.5, None),
        ("attic-t1", None, "unparsable"),
    ]


class SocatLine:
    """A pty pair with stable names, like a USB adapter's /dev/ttyUSB0, made by socat.
    `unplug()` makes the device node disappear; `plug()` brings it back under the same path."""

    def __init__(self, directory):
        self.socat = require_binary("socat")
        self.device, self.sim = directory / "ttyUSB0", directory / "sim"
        self.proc = None

    def plug(self):
        self.proc = subprocess.Popen(
            [self.socat, f"pty,raw,echo=0,link={self.device}", f"pty,raw,echo=0,link={self.sim}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not (self.device.exists() and self.sim.exists()):
            assert time.monotonic() < deadline, "socat made no pty links"
            time.sleep(0.01)  # socat creates the links right after start: nothing to await

    def unplug(self):
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=5)
            self.proc = None
        assert not self.device.exists()


@pytest.mark.serial
async def test_serial_source_reopens_a_port_that_is_unplugged_and_plugged_back(tmp_path):
    line = SocatLine(tmp_path)
    line.plug()
    try:
        source = SerialSource(
            name="serial:test",
            port=SerialPortConfig(path=str(line.device)),
            sensors={"T1": "t1"},
            clock=ScaledClock(start=START, speed=1),
            quarantine=Quarantine(),
        )
        async with running(source) as samples:
            with open(line.sim, "wb", buffering=0) as sim:
                assert (await until_open(sim.write, samples, b"T1 1.0\n")).value == 1.0
            line.unplug()
            line.plug()
            with open(line.sim, "wb", buffering=0) as sim:
                back = await asyncio.wait_for(until_open(sim.write, samples, b"T1 2.0\n"), 30)
                while back.value != 2.0:
                    back = await next_sample(samples)
            assert back.sensor == "t1"
    finally:
        line.unplug()


def write_w1(base, device, text):
    (base / device).mkdir(parents=True, exist_ok=True)
    (base / device / "w1_slave").write_text(text)


async def test_onewire_source_reads_a_sysfs_tree_and_reports_every_fault(tmp_path):
    from gateway.sources.onewire import OneWireSource

    good, crc_fail, reset = "28-000005e2fdc3", "28-000005e2fdc4", "28-000005e2fdc5"
    write_w1(
        tmp_path,
        good,
        "72 01 4b 46 7f ff 0e 10 57 : crc=57 YES\n72 01 4b 46 7f ff 0e 10 57 t=23125\n",
    )
    write_w1(
        tmp_path,
        crc_fail,
        "72 01 4b 46 7f ff 0e 10 57 : crc=12 NO\n72 01 4b 46 7f ff 0e 10 57 t=23125\n",
    )
    write_w1(
        tmp_path,
        reset,
        "50 05 4b 46 7f ff 0c 10 1c : crc=1c YES\n50 05 4b 46 7f ff 0c 10 1c t=85000\n",
    )
    source = OneWireSource(
        base=tmp_path,
        points=[
            ("t-good", good),
            ("t-crc", crc_fail),
            ("t-reset", reset),
            ("t-gone", "28-000000000000"),
        ],
        poll_interval=60,
        clock=ScaledClock(start=START, speed=600),
    )
    async with running(source) as samples:
        first = [await next_sample(samples) for _ in range(4)]
        import shutil

        shutil.rmtree(tmp_path / good)  # the probe is unplugged
        second = [await next_sample(samples) for _ in range(4)]
    assert [(s.sensor, s.value, s.fault) for s in first] == [
        ("t-good", 23.125, None),
        ("t-crc", None, "crc"),
        ("t-reset", None, "ds18b20-power-on-reset"),
        ("t-gone", None, "sensor-lost"),
    ]
    assert (second[0].sensor, second[0].fault) == ("t-good", "sensor-lost")


class SocatPtyPair:
    """Two linked pseudo-terminals with stable names (socat), like the two ends of an RS-485
    adapter pair."""

    def __init__(self, directory):
        socat = require_binary("socat")
        self.a, self.b = directory / "ttyA", directory / "ttyB"
        self.proc = subprocess.Popen(
            [socat, f"pty,raw,echo=0,link={self.a}", f"pty,raw,echo=0,link={self.b}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not (self.a.exists() and self.b.exists()):
            assert time.monotonic() < deadline, "socat made no pty links"
            time.sleep(0.01)  # socat creates the links right after start: nothing to await

    def close(self):
        self.proc.terminate()
        self.proc.wait(timeout=5)


@pytest.mark.modbus
@pytest.mark.serial
async def test_modbus_rtu_bus_polls_each_device_in_turn_and_a_missing_one_times_out(tmp_path):
    from firmware_sim.modbus import ModbusRtuBus

    clock = ScaledClock(start=START, speed=60)  # a 60 s cycle every second
    line = SocatPtyPair(tmp_path)
    bus = ModbusRtuBus(
        port=str(line.a),
        clock=clock,
        baudrate=19200,
        thermometers={1: steady(4.5), 2: steady(21.0)},
    )
    await bus.start()
    rtu = {"serial": str(line.b), "baudrate": 19200, "poll_interval": 60, "timeout": 0.3}
    devices = [
        (
            ModbusDeviceConfig(device_id=i, **rtu),
            [(f"t{i}", ModbusPoint(type="modbus", device=f"d{i}", address=0))],
        )
        for i in (1, 2, 3)
    ]
    source = ModbusSource(name="rtu:test", devices=devices, clock=clock)
    try:
        async with running(source) as samples:
            got = [await next_sample(samples) for _ in range(3)]
    finally:
        await bus.stop()
        line.close()
    assert [(s.sensor, s.value, s.fault) for s in got] == [
        ("t1", 45.0, None),
        ("t2", 210.0, None),
        ("t3", None, "modbus-timeout"),
    ]


class SilentDevice:
    """A TCP peer that accepts connections and never answers: the worst kind of dead device."""

    def __init__(self):
        self.port = free_port()
        self.server = None
        self.writers = []

    async def start(self):
        async def hold(reader, writer):
            self.writers.append(writer)
            await reader.read()  # swallow requests until the client goes away

        self.server = await asyncio.start_server(hold, "127.0.0.1", self.port)

    async def stop(self):
        for w in self.writers:
            w.close()
        self.server.close()
        await self.server.wait_closed()


@pytest.mark.modbus
async def test_a_dead_modbus_device_does_not_slow_the_others():
    from gateway.config import GatewayConfig, SensorConfig
    from gateway.service import build_sources

    clock = ScaledClock(start=START, speed=100)  # a 10 s poll every 0.1 s real
    healthy_ports = [free_port(), free_port()]
    healthy = [
        ModbusThermometer(host="127.0.0.1", port=p, playback=steady(20.0 + i), clock=clock)
        for i, p in enumerate(healthy_ports)
    ]
    silent = SilentDevice()
    await silent.start()
    for d in healthy:
        await d.start()
    ports = [*healthy_ports, silent.port]
    config = GatewayConfig.model_validate(
        {
            "id": "gw",
            "site": "s",
            "quarantine": None,
            "modbus_devices": {
                f"d{i}": {"host": "127.0.0.1", "port": p, "poll_interval": 10, "timeout": 0.5}
                for i, p in enumerate(ports)
            },
        }
    )
    sensors = [
        SensorConfig.model_validate(
            {
                "id": f"t{i}",
                "site": "s",
                "source": {"type": "modbus", "device": f"d{i}", "address": 0},
            }
        )
        for i in range(3)
    ]
    sources = build_sources(config, sensors, clock=clock, quarantine=Quarantine())
    samples = asyncio.Queue()
    tasks = [asyncio.create_task(s.run(into(samples))) for s in sources]
    start = clock.now()
    got = []
    try:
        while clock.now() - start < timedelta(seconds=300):  # five simulated minutes
            got.append(await next_sample(samples))
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for d in healthy:
            await d.stop()
        await silent.stop()
    per_sensor = {f"t{i}": [s for s in got if s.sensor == f"t{i}"] for i in range(3)}
    # 30 polls in 300 s at a 10 s interval; the silent device's timeouts (50 s of simulated
    # time each) do not delay the healthy devices at all.
    for name in ("t0", "t1"):
        assert 29 <= len(per_sensor[name]) <= 32, (name, len(per_sensor[name]))
        assert all(s.fault is None for s in per_sensor[name])
    assert per_sensor["t2"] and all(s.fault == "modbus-timeout" for s in per_sensor["t2"])


@pytest.mark.mqtt
async def test_mqtt_topic_patterns_map_varying_topics_to_a_sensor(mosquitto):
    quarantine = Quarantine()
    source = MqttSource(
        name="mqtt:test",
        broker=MqttBrokerConfig(host=mosquitto.host, port=mosquitto.port),
        points={
            "tele/+/SENSOR": (
                "t-tasmota",
                MqttPoint(type="mqtt", topic="tele/+/SENSOR", format="tasmota"),
            ),
            "shellies/#": ("t-shelly", MqttPoint(type="mqtt", topic="shellies/#", format="shelly")),
            "tele/kitchen/SENSOR": (
                "t-kitchen",
                MqttPoint(type="mqtt", topic="tele/kitchen/SENSOR", format="tasmota"),
            ),
        },
        clock=ScaledClock(start=START, speed=1),
        quarantine=quarantine,
        client_id="gw-patterns",
    )
    async with running(source) as samples, aiomqtt.Client(mosquitto.host, mosquitto.port) as device:
        while True:  # until the subscriptions are in place
            await device.publish(
                "tele/tasmota_8A3E12/SENSOR",
                b'{"DS18B20":{"Temperature":4.5},"TempUnit":"C"}',
                qos=1,
            )
            with contextlib.suppress(TimeoutError):
                first = await next_sample(samples, timeout=0.5)
                break
        await device.publish(
            "tele/kitchen/SENSOR", b'{"DS18B20":{"Temperature":30.5},"TempUnit":"C"}', qos=1
        )
        await device.publish(
            "shellies/shellyplusht-08b61f/status/temperature:0", b'{"id":0,"tC":21.8}', qos=1
        )
        got = [await next_sample(samples) for _ in range(2)]
    assert (first.sensor, first.value) == ("t-tasmota", 4.5)
    assert {(s.sensor, s.value) for s in got} == {("t-kitchen", 30.5), ("t-shelly", 21.8)}


def one_sensor(topic, client_id, broker, quarantine=None):
    """An MQTT source reading sensor t1 from `topic`."""
    return MqttSource(
        name="mqtt:test",
        broker=broker,
        points={topic: ("t1", MqttPoint(type="mqtt", topic=topic))},
        clock=ScaledClock(start=START, speed=1),
        quarantine=quarantine or Quarantine(),
        client_id=client_id,
    )


async def until_received(samples, device, topic, payload=b"0.5"):
    """Publish `payload` until the source hands a sample on (its session then exists)."""
    while True:
        await device.publish(topic, payload, qos=1)
        with contextlib.suppress(TimeoutError):
            return await next_sample(samples, timeout=0.5)


async def values_until(samples, last, probe=0.5):
    """The values handed on up to `last`, without the `probe`'s (still in flight, perhaps)."""
    seen: list[float] = []
    while not seen or seen[-1] != last:
        value = (await next_sample(samples)).value
        if value != probe:
            seen.append(value)
    return seen


@pytest.mark.mqtt
async def test_an_mqtt_message_is_acknowledged_only_once_its_reading_is_committed(mosquitto):
    """A gateway that dies between receiving a message and committing its reading gets the
    message again when it comes back; one that committed does not."""
    broker = MqttBrokerConfig(host=mosquitto.host, port=mosquitto.port)

    def source():
        return one_sensor("s/t", "gw-ack", broker)

    async def publish(value):
        async with aiomqtt.Client(mosquitto.host, mosquitto.port) as device:
            await device.publish("s/t", value, qos=1)

    async with (
        running(source()) as samples,  # creates the persistent session
        aiomqtt.Client(mosquitto.host, mosquitto.port) as device,
    ):
        assert (await until_received(samples, device, "s/t")).value == 0.5
        while not samples.empty():
            samples.get_nowait()

    async def next_value(samples):  # a 0.5 still in flight from the first round may follow
        while (value := (await next_sample(samples)).value) == 0.5:
            pass
        return value

    async with running(source(), commit=False) as samples:
        await publish(b"4.5")
        assert await next_value(samples) == 4.5
    # "crashed" before the outbox commit: the broker sends the message again
    async with running(source()) as samples:
        assert await next_value(samples) == 4.5
    # committed and acknowledged: it does not come again
    async with running(source()) as samples:
        await publish(b"5.5")
        assert await next_value(samples) == 5.5


@pytest.mark.mqtt
async def test_a_run_of_messages_committed_together_is_acknowledged_and_never_comes_again(
    mosquitto,
):
    """The source acknowledges the messages whose readings were committed in one go (one
    write of their PUBACKs): after a restart, none of them comes again."""
    broker = MqttBrokerConfig(host=mosquitto.host, port=mosquitto.port)

    def source():
        return one_sensor("s/run", "gw-run", broker)

    async def publish(*values):
        async with aiomqtt.Client(mosquitto.host, mosquitto.port) as device:
            for value in values:
                await device.publish("s/run", str(value).encode(), qos=1)

    async with (
        running(source()) as samples,  # creates the persistent session
        aiomqtt.Client(mosquitto.host, mosquitto.port) as device,
    ):
        await until_received(samples, device, "s/run")
    run = [float(v) for v in range(1, 301)]
    async with running(source()) as samples:
        await publish(*run)
        assert await values_until(samples, run[-1]) == run
    async with running(source()) as samples:
        await publish(999.5)
        while (value := (await next_sample(samples)).value) == 0.5:
            pass
        assert value == 999.5, f"{value} came again: its acknowledgement was lost"


@pytest.mark.mqtt
async def test_a_backlog_larger_than_one_read_arrives_whole_and_in_order(mosquitto):
    """Messages queued while the gateway was away come at once, far more than one read of
    the socket takes: packets cut at every read's end are put together, none is lost."""
    broker = MqttBrokerConfig(host=mosquitto.host, port=mosquitto.port)
    async with (
        running(one_sensor("s/burst", "gw-burst", broker)) as samples,  # the session
        aiomqtt.Client(mosquitto.host, mosquitto.port) as device,
    ):
        await until_received(samples, device, "s/burst")
    # 3,000 messages of 3–300 bytes: some 450 kB, cut wherever the reads end
    values = [float(i) for i in range(1, 3001)]
    async with aiomqtt.Client(mosquitto.host, mosquitto.port) as device:
        for i, value in enumerate(values):
            await device.publish("s/burst", f"{value:.1f}".ljust(3 + i % 300).encode(), qos=1)
    assert READ < 450_000
    async with running(one_sensor("s/burst", "gw-burst", broker)) as samples:
        assert await values_until(samples, values[-1]) == values


@pytest.mark.mqtt
async def test_an_idle_source_keeps_its_connection_with_pings(mosquitto, caplog):
    """Nothing to read for seven keepalives: the source pings, the broker keeps it."""
    quiet = MqttBrokerConfig.model_construct(  # a second's keepalive (configs take ≥ 5 s)
        **{**MqttBrokerConfig(host=mosquitto.host, port=mosquitto.port).__dict__, "keepalive": 1}
    )
    async with (
        running(one_sensor("s/idle", "gw-idle", quiet)) as samples,
        aiomqtt.Client(mosquitto.host, mosquitto.port) as device,
    ):
        await until_received(samples, device, "s/idle", b"1.5")
        # the broker's own timer: mosquitto drops a client silent for 1.5 keepalives, checked
        # every few seconds (a silent client with a keepalive of 1 s goes after about 6 s)
        await asyncio.sleep(7.0)
        await device.publish("s/idle", b"2.5", qos=1)
        while (await next_sample(samples)).value != 2.5:
            pass
    assert "broker unavailable" not in caplog.text


async def test_a_message_on_a_topic_that_is_not_utf8_is_quarantined_and_acknowledged():
    """mosquitto refuses such a topic, but not every broker does: the message is no sensor's,
    is quarantined, and is acknowledged (it would otherwise come back forever)."""
    import paho.mqtt.client as mqtt

    from gateway.mqttack import PubackRun

    quarantine = Quarantine()
    source = one_sensor("s/t", "gw-bytes", MqttBrokerConfig(), quarantine)
    inbox: collections.deque = collections.deque()
    client = source._client(inbox, lambda: None, lambda _reason: None)
    message = mqtt.MQTTMessage(mid=7, topic=b"s/\xff\xfe")
    message.qos, message.payload = 1, b"21.5"
    client.on_message(client, None, message)
    acks = PubackRun(client, asyncio.get_running_loop())
    handed: list = []

    async def emit(samples):
        handed.extend(samples)

    await source._hand_on(acks, inbox, emit)
    await asyncio.sleep(0)  # the acknowledgements go when the loop is next free
    assert handed == []
    assert quarantine.counts == {"mqtt-unknown-topic": 1}
    assert acks.sent == 1


def test_pubacks_are_written_back_to_back_as_mqtt_frames_them():
    assert puback_packets([1, 258, 65535]) == bytes(
        [0x40, 2, 0, 1, 0x40, 2, 1, 2, 0x40, 2, 0xFF, 0xFF]
    )


@pytest.mark.mqtt
async def test_a_message_feeding_two_sensors_is_acknowledged_once_both_are_committed(mosquitto):
    """One zigbee2mqtt message, temperature and humidity: both sensors get their reading, and
    the message is acknowledged only when both readings are committed — a gateway that died
    after committing one gets it again."""

    def on(path, sensor):
        return (sensor, MqttPoint(type="mqtt", topic="z/cellar", format="json", value_path=path))

    def source():
        return MqttSource(
            name="mqtt:test",
            broker=MqttBrokerConfig(host=mosquitto.host, port=mosquitto.port),
            points=[on("temperature", "cellar-t1"), on("humidity", "cellar-h1")],
            clock=ScaledClock(start=START, speed=1),
            quarantine=Quarantine(),
            client_id="gw-two",
        )

    async def publish(temperature, humidity):
        payload = json.dumps({"temperature": temperature, "humidity": humidity}).encode()
        async with aiomqtt.Client(mosquitto.host, mosquitto.port) as device:
            await device.publish("z/cellar", payload, qos=1)

    async def pairs(samples, first_value):
        """Samples until the pair of the message whose temperature is `first_value`."""
        while True:
            s = await next_sample(samples)
            if s.value == first_value:
                return s, await next_sample(samples)

    async with running(source()) as samples:  # the persistent session
        while True:
            await publish(0.5, 50.0)
            with contextlib.suppress(TimeoutError):
                await next_sample(samples, timeout=0.5)
                break
    queue: asyncio.Queue = asyncio.Queue()

    async def commit_only_the_first(batch):  # dies between the two commits
        for sample in batch:
            await queue.put(sample)
        batch[0].committed()

    task = asyncio.create_task(source().run(commit_only_the_first))
    try:
        await publish(7.25, 81.5)
        t, h = await pairs(queue, 7.25)
        assert {(t.sensor, t.value), (h.sensor, h.value)} == {
            ("cellar-t1", 7.25),
            ("cellar-h1", 81.5),
        }
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    async with running(source()) as samples:  # not acknowledged: it comes again
        t, h = await pairs(samples, 7.25)
        assert h.value == 81.5
    async with running(source()) as samples:  # both committed: it does not
        await publish(8.0, 80.0)
        seen = []
        while (s := await next_sample(samples)).value != 8.0:
            seen.append(s.value)
        assert 7.25 not in seen and 81.5 not in seen, seen
