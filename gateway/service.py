"""The gateway: builds a source per connection, normalises what they read, hands readings on."""

from __future__ import annotations

import asyncio
import logging
import re
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence

from gateway.clock import Clock
from gateway.config import GatewayConfig, ModbusPoint, MqttPoint, SensorConfig, SerialPoint
from gateway.models import Reading
from gateway.normalize import Sample, normalize
from gateway.quarantine import Quarantine
from gateway.sources import Source
from gateway.sources.modbus import ModbusSource
from gateway.sources.mqtt import MqttSource
from gateway.sources.serial import SerialSource

__all__ = ["Gateway", "ReadingSink", "build_sources"]

log = logging.getLogger("husvakt.gateway")

#: Where readings go next (the rule engine in-process, an uplink otherwise).
ReadingSink = Callable[[Reading], Awaitable[None]]


def build_sources(
    config: GatewayConfig,
    sensors: Sequence[SensorConfig],
    *,
    clock: Clock,
    quarantine: Quarantine,
) -> list[Source]:
    """One source per broker, Modbus device and serial port that at least one sensor uses."""
    mqtt: dict[str, dict[str, tuple[str, MqttPoint]]] = {}
    modbus: dict[str, list[tuple[str, ModbusPoint]]] = {}
    serial: dict[str, dict[str, str]] = {}
    for sensor in sensors:
        src = sensor.source
        if isinstance(src, MqttPoint):
            broker = src.broker or next(iter(config.mqtt_brokers))
            mqtt.setdefault(broker, {})[src.topic] = (sensor.id, src)
        elif isinstance(src, ModbusPoint):
            modbus.setdefault(src.device, []).append((sensor.id, src))
        elif isinstance(src, SerialPoint):
            name = src.name if src.name is not None else sensor.id
            has_sensor_group = (
                "sensor" in re.compile(config.serial_ports[src.port].pattern).groupindex
            )
            key = name if has_sensor_group else ""
            serial.setdefault(src.port, {})[key] = sensor.id
    sources: list[Source] = []
    for broker_id, points in mqtt.items():
        sources.append(
            MqttSource(
                name=f"mqtt:{broker_id}",
                broker=config.mqtt_brokers[broker_id],
                points=points,
                clock=clock,
                quarantine=quarantine,
                client_id=f"husvakt-{config.site}-{config.id}-{broker_id}",
            )
        )
    for device_id, mb_points in modbus.items():
        sources.append(
            ModbusSource(
                name=f"modbus:{device_id}",
                device=config.modbus_devices[device_id],
                points=mb_points,
                clock=clock,
            )
        )
    for port_id, mapping in serial.items():
        sources.append(
            SerialSource(
                name=f"serial:{port_id}",
                port=config.serial_ports[port_id],
                sensors=mapping,
                clock=clock,
                quarantine=quarantine,
            )
        )
    return sources


class Gateway:
    """Runs every source as a named task and turns their samples into numbered readings."""

    def __init__(
        self,
        *,
        config: GatewayConfig,
        sensors: Sequence[SensorConfig],
        clock: Clock,
        sink: ReadingSink,
        first_seq: int = 1,
    ) -> None:
        self._config = config
        self._sensors = {s.id: s for s in sensors}
        self._sink = sink
        self.quarantine = Quarantine()
        self._sources = build_sources(config, sensors, clock=clock, quarantine=self.quarantine)
        self._seq = first_seq
        self.counts: Counter[str] = Counter()

    @property
    def sources(self) -> tuple[Source, ...]:
        return tuple(self._sources)

    async def run(self) -> None:
        """Read from every source until cancelled."""
        log.info(
            "gateway %s/%s: %d sources, %d sensors",
            self._config.site,
            self._config.id,
            len(self._sources),
            len(self._sensors),
        )
        async with asyncio.TaskGroup() as tg:
            for source in self._sources:
                tg.create_task(source.run(self.accept), name=f"source {source.name}")

    async def accept(self, sample: Sample) -> None:
        sensor = self._sensors.get(sample.sensor)
        if sensor is None:
            self.quarantine.add("unknown-sensor", sample.sensor)
            return
        reading = normalize(
            sample,
            sensor,
            site=sensor.site or self._config.site,
            gateway=self._config.id,
            seq=self._seq,
        )
        self._seq += 1
        self.counts[reading.quality] += 1
        await self._sink(reading)
