"""`husvakt demo`: one night at a school, replayed in seconds through the real protocols.

An embedded MQTT broker and three simulated thermometers — JSON over MQTT in the basement, a
Modbus TCP register in the boiler room, a serial line in a classroom — feed the all-in-one
runtime. The night is a scenario (`husvakt/data/demo-night.yaml`), played by the same simulated
devices as `husvakt sim`: over the night the basement cools to 3 °C and the boiler room
overheats past 57 °C; the classroom stays normal. The demo ends with the cases that opened.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from casebridge.models import Case
from casebridge.store.sql import SqliteCaseStore
from firmware_sim.scenario import Scenario
from gateway.clock import ScaledClock
from gateway.config import (
    GatewayConfig,
    ModbusPoint,
    MqttPoint,
    OneWirePoint,
    SensorConfig,
    SerialPoint,
)
from gateway.configfile import ConfigError, ConfigProblem
from gateway.outbox import SqliteOutbox
from husvakt.allinone import AllInOne
from husvakt.broker import EmbeddedBroker
from husvakt.config import HusvaktConfig, load_config
from husvakt.replay import load_scenario_file
from husvakt.sim import Endpoint, run_sim

__all__ = ["DEFAULT_CONFIG", "DEFAULT_NIGHT", "DemoResult", "run_demo"]

log = logging.getLogger("husvakt.demo")

#: The demo's site and night travel in the package: `husvakt demo` works from an installed wheel.
DEFAULT_CONFIG = Path(__file__).resolve().parent / "data" / "demo.yaml"
DEFAULT_NIGHT = DEFAULT_CONFIG.with_name("demo-night.yaml")
#: simulated minutes the runtime goes on after the night's last reading (the last polls)
AFTER_THE_NIGHT = timedelta(minutes=2)


@dataclass(frozen=True)
class DemoResult:
    cases: list[Case]
    db: Path
    readings: int
    faults: int
    quarantined: int


@contextlib.asynccontextmanager
async def _broker(address: tuple[str, int] | None) -> AsyncIterator[tuple[str, int]]:
    if address is not None:
        yield address
        return
    async with EmbeddedBroker() as broker:
        yield broker.host, broker.port


def _mismatch(config: Path, field: str, message: str) -> ConfigError:
    return ConfigError([ConfigProblem(str(config), 0, 0, field, message)])


def _check(scenario: Scenario, config: HusvaktConfig, config_path: Path) -> GatewayConfig:
    """The config's gateway, once every device the night plays is a sensor the config reads
    the way the simulated device sends."""
    if config.gateway is None:
        raise _mismatch(config_path, "gateway", "the demo config needs a gateway")
    by_id = {s.id: s for s in config.sensors}
    for device in scenario.devices:
        sensor = by_id.get(device.sensor)
        if sensor is None:
            raise _mismatch(config_path, "sensors", f"the night plays {device.sensor!r}; add it")
        source = sensor.source
        if isinstance(source, MqttPoint) and source.topic != device.mqtt_topic:
            message = f"the night publishes to {device.mqtt_topic}, not {source.topic}"
            raise _mismatch(config_path, f"{sensor.id}.source.topic", message)
        if isinstance(source, ModbusPoint) and (
            config.gateway.modbus_devices[source.device].device_id,
            source.address,
        ) != (1, 0):
            message = "a simulated PLC is device 1, register 0"
            raise _mismatch(config_path, f"{sensor.id}.source", message)
    return config.gateway


def _pointed_at(
    gateway: GatewayConfig,
    sensors: Sequence[SensorConfig],
    endpoints: Sequence[Endpoint],
    broker: tuple[str, int],
) -> GatewayConfig:
    """The gateway config with each simulated device's connection where the simulation put it
    (the config names the sensors and how they are read; the endpoints are placeholders)."""
    by_id = {s.id: s for s in sensors}
    brokers, devices = dict(gateway.mqtt_brokers), dict(gateway.modbus_devices)
    ports, onewire = dict(gateway.serial_ports), gateway.onewire
    for end in endpoints:
        source = by_id[end.sensor].source
        if isinstance(source, MqttPoint):
            name = source.broker or next(iter(brokers))
            brokers[name] = brokers[name].model_copy(update={"host": broker[0], "port": broker[1]})
        elif isinstance(source, ModbusPoint):
            devices[source.device] = devices[source.device].model_copy(
                update={"host": "127.0.0.1", "port": end.port}
            )
        elif isinstance(source, SerialPoint):
            ports[source.port] = ports[source.port].model_copy(update={"path": end.path})
        elif isinstance(source, OneWirePoint):
            onewire = onewire.model_copy(update={"base": Path(str(end.path))})
    return gateway.model_copy(
        update={
            "mqtt_brokers": brokers,
            "modbus_devices": devices,
            "serial_ports": ports,
            "onewire": onewire,
        }
    )


def _fresh(db: Path) -> None:
    for part in ("", ".outbox", ".rules", ".quarantine"):
        for suffix in ("", "-wal", "-shm"):
            db.with_name(db.name + part + suffix).unlink(missing_ok=True)


async def run_demo(
    *,
    db: Path,
    config_path: Path = DEFAULT_CONFIG,
    night: Path = DEFAULT_NIGHT,
    speed: float = 1440.0,
    broker: tuple[str, int] | None = None,
) -> DemoResult:
    """Play the demo night; returns the cases in the fresh SQLite file `db`."""
    config = load_config(config_path)
    scenario: Scenario = load_scenario_file(night)
    gateway = _check(scenario, config, config_path)
    _fresh(db)
    clock = ScaledClock(start=scenario.start, speed=speed)
    end = scenario.start + timedelta(seconds=scenario.duration) + AFTER_THE_NIGHT
    endpoints: list[Endpoint] = []
    ready = asyncio.Event()
    async with _broker(broker) as address:
        store = SqliteCaseStore(db)
        await store.start()
        outbox = SqliteOutbox(db.with_name(db.name + ".outbox"))
        await outbox.open()
        stop = asyncio.Event()
        try:
            async with asyncio.TaskGroup() as tg:
                sim = tg.create_task(
                    run_sim(
                        scenario,
                        clock=clock,
                        broker=address,
                        ready=ready,
                        endpoints=endpoints,
                        keep_serving=True,
                    ),
                    name="simulated devices",
                )
                await ready.wait()
                live = _live(config, db, _pointed_at(gateway, config.sensors, endpoints, address))
                runtime = AllInOne(config=live, clock=clock, store=store, outbox=outbox)
                tg.create_task(runtime.run(stop), name="all-in-one")
                await clock.sleep_until(end)
                stop.set()
                sim.cancel()
            cases = await store.list_cases()
        finally:
            await store.aclose()
            await outbox.close()
    return DemoResult(
        cases=cases,
        db=db,
        readings=runtime.gateway.counts["good"],
        faults=runtime.gateway.counts["fault"],
        quarantined=runtime.gateway.quarantine.total,
    )


def _live(config: HusvaktConfig, db: Path, gateway: GatewayConfig) -> HusvaktConfig:
    """The config with the rule state and quarantine next to the demo's case store."""
    quarantine = db.with_name(db.name + ".quarantine")
    return config.model_copy(
        update={
            "stream": config.stream.model_copy(
                update={"state": db.with_name(db.name + ".rules"), "quarantine": quarantine}
            ),
            "gateway": gateway.model_copy(update={"quarantine": quarantine}),
        }
    )
