"""`husvakt sim`: a scenario's devices, live on their protocols, read back by the gateway."""

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta

import pytest

from firmware_sim.scenario import Scenario
from gateway.clock import ScaledClock
from gateway.config import GatewayConfig, SensorConfig
from gateway.quarantine import Quarantine
from gateway.service import build_sources
from husvakt.sim import Endpoint, run_sim
from tests.gateway.test_sources import into

START = datetime(2026, 1, 14, 22, 0, tzinfo=UTC)

SCENARIO = Scenario.model_validate(
    {
        "name": "four-protocols",
        "start": START,
        "duration": 7200,
        "devices": [
            {
                "sensor": "m1",
                "protocol": "mqtt",
                "every": 60,
                "topic": "sim/m1",
                "signal": {"baseline": 4.5},
            },
            {"sensor": "b1", "protocol": "modbus", "every": 60, "signal": {"baseline": 36.5}},
            {"sensor": "s1", "protocol": "serial", "every": 60, "signal": {"baseline": 21.25}},
            {"sensor": "w1", "protocol": "onewire", "every": 60, "signal": {"baseline": 9.5}},
        ],
        "timeline": [{"at": 1800, "sensor": "w1", "fault": "ds18b20-reset", "for": 600}],
    }
)


@pytest.mark.mqtt
@pytest.mark.modbus
@pytest.mark.serial
async def test_a_gateway_reads_every_simulated_device_on_its_protocol(mosquitto):
    endpoints: list[Endpoint] = []
    ready = asyncio.Event()
    sim = asyncio.create_task(
        run_sim(
            SCENARIO,
            clock=ScaledClock(start=START, speed=120),
            broker=(mosquitto.host, mosquitto.port),
            ready=ready,
            endpoints=endpoints,
        )
    )
    await asyncio.wait_for(ready.wait(), 10)
    where = {e.sensor: e for e in endpoints}
    modbus_port, sysfs, device = where["b1"].port, where["w1"].path, where["w1"].device
    assert where["m1"].topic == "sim/m1"
    assert where["b1"].where == f"127.0.0.1:{modbus_port} device 1 register 0 (0.1 °C)"
    config = GatewayConfig.model_validate(
        {
            "id": "gw",
            "site": "s",
            "mqtt_brokers": {"local": {"host": mosquitto.host, "port": mosquitto.port}},
            "modbus_devices": {
                "plc": {"host": "127.0.0.1", "port": modbus_port, "poll_interval": 60}
            },
            "serial_ports": {"line": {"path": where["s1"].path}},
            "onewire": {"base": sysfs, "poll_interval": 60},
        }
    )
    sensors = [
        SensorConfig.model_validate(s)
        for s in (
            {"id": "m1", "site": "s", "source": {"type": "mqtt", "topic": "sim/m1"}},
            {
                "id": "b1",
                "site": "s",
                "scale": 0.1,
                "source": {"type": "modbus", "device": "plc", "address": 0},
            },
            {"id": "s1", "site": "s", "source": {"type": "serial", "port": "line"}},
            {"id": "w1", "site": "s", "source": {"type": "onewire", "device": device}},
        )
    ]
    clock = ScaledClock(start=START + timedelta(minutes=1), speed=120)
    sources = build_sources(config, sensors, clock=clock, quarantine=Quarantine())
    samples: asyncio.Queue = asyncio.Queue()
    tasks = [asyncio.create_task(s.run(into(samples))) for s in sources]
    seen: dict[str, set] = {}
    try:

        async def until_all_seen():
            while len(seen) < 4 or "ds18b20-power-on-reset" not in seen.get("w1", set()):
                s = await samples.get()
                seen.setdefault(s.sensor, set()).add(s.fault or s.value)

        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(until_all_seen(), 40)
    finally:
        for group in (tasks, [sim]):  # the readers first, then the devices they read
            for t in group:
                t.cancel()
            _, pending = await asyncio.wait(group, timeout=10)
            assert not pending, [t.get_coro() for t in pending]
    assert set(seen) == {"m1", "b1", "s1", "w1"}, seen
    assert 4.5 in seen["m1"]
    assert 365.0 in seen["b1"]  # the raw register; the sensor's scale makes it 36.5 °C
    assert 21.25 in seen["s1"]
    assert 9.5 in seen["w1"] and "ds18b20-power-on-reset" in seen["w1"], seen["w1"]


@pytest.mark.parametrize("fmt", ["plain", "json", "tasmota", "zigbee2mqtt", "shelly", "esphome"])
def test_simulated_payload_shapes_decode_as_the_gateway_expects(fmt):
    from firmware_sim.encode import mqtt_payload as payload
    from gateway.decode import decode_mqtt

    value_path = "temperature" if fmt == "json" else None
    assert decode_mqtt(payload(fmt, "4.25").encode(), fmt, value_path) == 4.25
    assert payload(fmt, "\x00garbage") == "\x00garbage"


@pytest.mark.mqtt
@pytest.mark.modbus
@pytest.mark.serial
async def test_the_plugin_fixture_plays_a_scenario_device_on_each_protocol(
    husvakt_devices, mosquitto
):
    import aiomqtt
    from pymodbus.client import AsyncModbusTcpClient

    clock = ScaledClock(start=START, speed=60)  # one output a second
    frost = Scenario.single(
        "basement-t1",
        start=START,
        signal={"baseline": -3.5},
        timeline=[{"at": 120, "fault": "disconnected", "for": 600}],
    )
    async with aiomqtt.Client(mosquitto.host, mosquitto.port) as listener:
        await listener.subscribe("probes/#", qos=1)
        husvakt_devices.mqtt(mosquitto.host, mosquitto.port, "probes/t1", frost, clock)
        payloads = []
        async for message in listener.messages:
            payloads.append(message.payload)
            if len(payloads) == 3:
                break
    assert payloads == [b"-3.50", b"-3.50", b"-127.00"]  # the plain shape, then the fault

    steady = ScaledClock(start=START, speed=1)  # the next two read before the fault
    host, port = await husvakt_devices.modbus(frost, steady, address=3)
    plc = AsyncModbusTcpClient(host, port=port)
    await plc.connect()
    try:
        answer = await plc.read_holding_registers(3, count=1, device_id=1)
        assert answer.registers == [(-35) & 0xFFFF]  # tenths, two's complement
    finally:
        plc.close()

    path = husvakt_devices.serial(frost, steady)
    with open(path, "rb", buffering=0) as line:
        got = await asyncio.to_thread(line.read, 64)
    assert got == b"basement-t1 -3.50\r\n"
