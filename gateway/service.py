"""The gateway: builds a source per connection, normalises what they read, hands readings on."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections import Counter
from collections.abc import Sequence

from gateway.clock import Clock
from gateway.config import (
    GatewayConfig,
    ModbusPoint,
    MqttPoint,
    OneWirePoint,
    SensorConfig,
    SerialPoint,
)
from gateway.models import Reading
from gateway.normalize import Sample, normalize
from gateway.outbox import SqliteOutbox
from gateway.quarantine import Quarantine
from gateway.secrets import read_secret, tls_context
from gateway.sources import Source
from gateway.sources.modbus import ModbusDevice, ModbusSource
from gateway.sources.mqtt import MqttSource
from gateway.sources.onewire import OneWireSource
from gateway.sources.serial import SerialSource
from gateway.uplink import KafkaUplink, MqttUplink

__all__ = ["Gateway", "build_sources", "run_gateway"]

log = logging.getLogger("husvakt.gateway")


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
    onewire: list[tuple[str, str]] = []
    for sensor in sensors:
        src = sensor.source
        if isinstance(src, MqttPoint):
            broker = src.broker or next(iter(config.mqtt_brokers))
            mqtt.setdefault(broker, {})[src.topic] = (sensor.id, src)
        elif isinstance(src, ModbusPoint):
            modbus.setdefault(src.device, []).append((sensor.id, src))
        elif isinstance(src, OneWirePoint):
            onewire.append((sensor.id, src.device))
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
                password=read_secret(config.mqtt_brokers[broker_id].password_file),
                tls=tls_context(config.mqtt_brokers[broker_id].tls),
            )
        )
    # A TCP device is a connection of its own; devices on one serial line share an RTU bus.
    connections: dict[str, list[ModbusDevice]] = {}
    for device_id, mb_points in modbus.items():
        device = config.modbus_devices[device_id]
        key = f"rtu:{device.serial}" if device.serial else f"modbus:{device_id}"
        connections.setdefault(key, []).append((device, mb_points))
    for key, devices in connections.items():
        sources.append(ModbusSource(name=key, devices=devices, clock=clock))
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
    if onewire:
        sources.append(
            OneWireSource(
                base=config.onewire.base,
                points=onewire,
                poll_interval=config.onewire.poll_interval,
                clock=clock,
            )
        )
    return sources


class Gateway:
    """Runs every source as a named task; their samples become readings in the outbox.

    Sources hand samples over a bounded queue (back-pressure, never drops) to one writer that
    commits them to the outbox in batches; the outbox numbers them.
    """

    def __init__(
        self,
        *,
        config: GatewayConfig,
        sensors: Sequence[SensorConfig],
        clock: Clock,
        outbox: SqliteOutbox,
        batch: int = 500,
    ) -> None:
        self._config = config
        self._sensors = {s.id: s for s in sensors}
        self._outbox = outbox
        self._batch = batch
        self.quarantine = Quarantine()
        self._sources = build_sources(config, sensors, clock=clock, quarantine=self.quarantine)
        self._pending: asyncio.Queue[Reading] = asyncio.Queue(maxsize=config.queue_size)
        self.counts: Counter[str] = Counter()

    @property
    def sources(self) -> tuple[Source, ...]:
        return tuple(self._sources)

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Read from every source until `stop` is set (or until cancelled); on `stop`, return
        once everything already read is committed to the outbox."""
        log.info(
            "gateway %s/%s: %d sources, %d sensors; outbox %s",
            self._config.site,
            self._config.id,
            len(self._sources),
            len(self._sensors),
            self._outbox.path,
        )
        async with asyncio.TaskGroup() as tg:
            writer = tg.create_task(self._write(), name="outbox writer")
            sources = [
                tg.create_task(source.run(self.accept), name=f"source {source.name}")
                for source in self._sources
            ]
            await (stop or asyncio.Event()).wait()
            for task in sources:
                task.cancel()
            await self._pending.join()
            writer.cancel()

    async def accept(self, sample: Sample) -> None:
        sensor = self._sensors.get(sample.sensor)
        if sensor is None:
            self.quarantine.add("unknown-sensor", sample.sensor)
            return
        site = sensor.site or self._config.site
        # seq 0 until the outbox numbers the reading as it commits it
        reading = normalize(sample, sensor, site=site, gateway=self._config.id, seq=0)
        self.counts[reading.quality] += 1
        await self._pending.put(reading)

    async def _write(self) -> None:
        while True:
            batch = [await self._pending.get()]
            while len(batch) < self._batch and not self._pending.empty():
                batch.append(self._pending.get_nowait())
            try:
                await self._outbox.append(batch)
            finally:
                for _ in batch:
                    self._pending.task_done()


async def run_gateway(
    *,
    config: GatewayConfig,
    sensors: Sequence[SensorConfig],
    clock: Clock,
    stop: asyncio.Event,
    drain_grace: float = 10.0,
) -> SqliteOutbox:
    """`husvakt gateway`: sources → outbox → MQTT uplink, until `stop`; then commit what was
    read and keep uplinking for up to `drain_grace` seconds. What is left stays in the outbox
    for the next start. Returns the (closed) outbox."""
    if config.uplink is None:
        raise ValueError("gateway.uplink is not configured: where should readings go?")
    box = config.outbox
    outbox = SqliteOutbox(box.path, max_bytes=int(box.max_mb * 1e6), thin_window=box.thin_window)
    await outbox.open()
    uplink: MqttUplink | KafkaUplink
    if config.uplink.kafka is not None:
        uplink = KafkaUplink(config=config.uplink, site=config.site, gateway=config.id, clock=clock)
    else:
        password = read_secret(config.uplink.password_file)
        uplink = MqttUplink(
            config=config.uplink,
            site=config.site,
            gateway=config.id,
            clock=clock,
            password=password,
        )
    gateway = Gateway(config=config, sensors=sensors, clock=clock, outbox=outbox)
    try:
        async with asyncio.TaskGroup() as tg:
            reading = tg.create_task(gateway.run(stop), name="gateway")
            sending = tg.create_task(uplink.run(outbox), name="uplink")
            await reading
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(outbox.emptied.wait(), drain_grace)
            sending.cancel()
    finally:
        stats = outbox.stats
        log.info(
            "gateway stopped: %d uplinked, %d still buffered, %d thinned, last seq %d",
            uplink.published,
            stats.buffered,
            stats.thinned,
            stats.last_seq,
        )
        await outbox.close()
    return outbox
