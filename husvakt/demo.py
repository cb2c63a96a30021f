"""`husvakt demo`: one night at a school, replayed in seconds through the real protocols.

An embedded MQTT broker and three simulated thermometers — JSON over MQTT in the basement, a
Modbus TCP register in the boiler room, a serial line in a classroom — feed the all-in-one
runtime. Over the night the basement cools to 3 °C and the boiler room overheats past 57 °C;
the classroom stays normal. The demo ends with the cases that opened.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from casebridge.models import Case
from casebridge.store.sql import SqliteCaseStore
from firmware_sim.modbus import ModbusThermometer
from firmware_sim.mqtt import MqttThermometer
from firmware_sim.serial import SerialThermometer
from firmware_sim.signal import Glitch, Profile
from gateway.clock import ScaledClock
from gateway.config import ModbusPoint, MqttPoint, SensorConfig, SerialPoint
from gateway.outbox import SqliteOutbox
from husvakt.allinone import AllInOne
from husvakt.broker import EmbeddedBroker, free_port
from husvakt.config import HusvaktConfig, load_config

__all__ = ["DEFAULT_CONFIG", "DemoResult", "night_profiles", "run_demo"]

log = logging.getLogger("husvakt.demo")

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "config" / "demo.yaml"
NIGHT_START = datetime(2026, 1, 14, 22, 0, tzinfo=UTC)
NIGHT_LENGTH = timedelta(hours=8)
READ_EVERY = 60.0  # simulated seconds between readings of each device


def _at(hours: float) -> timedelta:
    return timedelta(hours=hours)


def night_profiles(start: datetime = NIGHT_START) -> dict[str, Profile]:
    """The night: (offset from 22:00, °C) for each of the three demo sensors."""
    return {
        # Heating fails at 22:00; the pipe room cools. A brief dip below 5 °C at 01:10 lasts
        # under the 10-minute hold (no alarm), then it sinks for good towards 3 °C.
        "mqtt": Profile(
            start=start,
            points=[
                (_at(0), 8.5),
                (_at(3.0), 5.5),
                (_at(3.17), 4.9),
                (_at(3.25), 5.3),
                (_at(5.0), 3.0),
                (_at(8.0), 3.2),
            ],
            noise=0.05,
            seed=1,
            # 03:30: the probe's connector works loose for a moment; the node reports −127.
            glitches=[Glitch(at=_at(5.5), value=-127.0, duration=timedelta(minutes=3))],
        ),
        # The boiler room runs warm; at 06:00 a burner fault heats it past 50 and then 57 °C.
        "modbus": Profile(
            start=start,
            points=[
                (_at(0), 36.0),
                (_at(6.0), 37.0),
                (_at(6.25), 52.0),
                (_at(6.5), 63.0),
                (_at(8.0), 64.0),
            ],
            noise=0.1,
            seed=2,
        ),
        # Classroom 204: an ordinary night, with one burst of line noise on the serial cable.
        "serial": Profile(
            start=start,
            points=[(_at(0), 21.0), (_at(4.0), 18.5), (_at(8.0), 19.5)],
            noise=0.1,
            seed=3,
            glitches=[Glitch(at=_at(2.0), value="\x00\x7f#@!", duration=timedelta(minutes=10))],
        ),
    }


@dataclass(frozen=True)
class DemoResult:
    cases: list[Case]
    db: Path
    readings: int
    faults: int
    quarantined: int


def _demo_sensor(
    config: HusvaktConfig, source: type[MqttPoint | ModbusPoint | SerialPoint]
) -> SensorConfig:
    for sensor in config.sensors:
        if isinstance(sensor.source, source):
            return sensor
    raise ValueError(f"the demo config needs a sensor with a {source.__name__} source")


@contextlib.asynccontextmanager
async def _broker(address: tuple[str, int] | None) -> AsyncIterator[tuple[str, int]]:
    if address is not None:
        yield address
        return
    async with EmbeddedBroker() as broker:
        yield broker.host, broker.port


async def run_demo(
    *,
    db: Path,
    config_path: Path = DEFAULT_CONFIG,
    speed: float = 1440.0,
    broker: tuple[str, int] | None = None,
) -> DemoResult:
    """Run the demo night; returns the cases in the fresh SQLite file `db`."""
    config = load_config(config_path)
    assert config.gateway is not None, "the demo config has a gateway"
    mqtt_sensor = _demo_sensor(config, MqttPoint)
    modbus_sensor = _demo_sensor(config, ModbusPoint)
    serial_sensor = _demo_sensor(config, SerialPoint)
    assert isinstance(mqtt_sensor.source, MqttPoint)
    assert isinstance(modbus_sensor.source, ModbusPoint)
    assert isinstance(serial_sensor.source, SerialPoint)

    stale_files = [db.with_name(db.name + suffix) for suffix in ("", "-wal", "-shm")]
    for part in (".outbox", ".rules", ".quarantine"):
        stale_files += [db.with_name(db.name + part + suffix) for suffix in ("", "-wal", "-shm")]
    for stale in stale_files:
        stale.unlink(missing_ok=True)
    clock = ScaledClock(start=NIGHT_START, speed=speed)
    profiles = night_profiles()
    modbus_port = free_port()
    gw = config.gateway
    mqtt_broker_id = mqtt_sensor.source.broker or next(iter(gw.mqtt_brokers))
    modbus_device_id = modbus_sensor.source.device
    serial_port_id = serial_sensor.source.port

    async with _broker(broker) as (mqtt_host, mqtt_port):
        serial_device = SerialThermometer(
            name=serial_sensor.source.name or serial_sensor.id,
            profile=profiles["serial"],
            clock=clock,
            interval=READ_EVERY,
        )
        modbus_device = ModbusThermometer(
            host="127.0.0.1",
            port=modbus_port,
            profile=profiles["modbus"],
            clock=clock,
            device_id=gw.modbus_devices[modbus_device_id].device_id,
            address=modbus_sensor.source.address,
        )
        mqtt_device = MqttThermometer(
            host=mqtt_host,
            port=mqtt_port,
            topic=mqtt_sensor.source.topic,
            profile=profiles["mqtt"],
            clock=clock,
            interval=READ_EVERY,
        )
        live = config.model_copy(
            update={
                "stream": config.stream.model_copy(
                    update={
                        "state": db.with_name(db.name + ".rules"),
                        "quarantine": db.with_name(db.name + ".quarantine"),
                    }
                ),
                "gateway": gw.model_copy(
                    update={
                        "quarantine": db.with_name(db.name + ".quarantine"),
                        "mqtt_brokers": {
                            **gw.mqtt_brokers,
                            mqtt_broker_id: gw.mqtt_brokers[mqtt_broker_id].model_copy(
                                update={"host": mqtt_host, "port": mqtt_port}
                            ),
                        },
                        "modbus_devices": {
                            **gw.modbus_devices,
                            modbus_device_id: gw.modbus_devices[modbus_device_id].model_copy(
                                update={"host": "127.0.0.1", "port": modbus_port}
                            ),
                        },
                        "serial_ports": {
                            **gw.serial_ports,
                            serial_port_id: gw.serial_ports[serial_port_id].model_copy(
                                update={"path": serial_device.path}
                            ),
                        },
                    }
                ),
            }
        )
        store = SqliteCaseStore(db)
        await store.start()
        outbox = SqliteOutbox(db.with_name(db.name + ".outbox"))
        await outbox.open()
        runtime = AllInOne(config=live, clock=clock, store=store, outbox=outbox)
        stop = asyncio.Event()
        await modbus_device.start()
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(runtime.run(stop), name="all-in-one")
                devices = [
                    tg.create_task(mqtt_device.run(), name="sim mqtt thermometer"),
                    tg.create_task(serial_device.run(), name="sim serial thermometer"),
                ]
                await clock.sleep_until(
                    NIGHT_START + NIGHT_LENGTH + timedelta(seconds=2 * READ_EVERY)
                )
                stop.set()
                for task in devices:
                    task.cancel()
        finally:
            await modbus_device.stop()
            serial_device.close()
        cases = await store.list_cases()
        await store.aclose()
        await outbox.close()
    return DemoResult(
        cases=cases,
        db=db,
        readings=runtime.gateway.counts["good"],
        faults=runtime.gateway.counts["fault"],
        quarantined=runtime.gateway.quarantine.total,
    )
