"""Driving Faust workers and the Kafka topics around them from tests and benchmarks."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from gateway.models import Reading
from gateway.wire import encode_batch, encode_tick, kafka_key
from stream.models import Alarm
from tests.services import stop_process

ROOT = Path(__file__).resolve().parents[2]
SCHOOL = ROOT / "config" / "scenarios" / "school.yaml"

#: The sensors of a second gateway the traces use, and the sentinels that end a trace: the
#: registry refuses readings of sensors and gateways the config does not name.
SECOND_GATEWAY = """\
  - {id: basement-t1-2, gateway: pi-attic, building: main, room: basement, probe: ds18b20,
     source: {type: mqtt, topic: attic/basement-t1}}
  - {id: attic-t1-2, gateway: pi-attic, building: main, room: attic,
     source: {type: onewire, device: 28-000005e2fdc4}}
  - {id: sentinel-pi-basement, building: main, room: boiler-room,
     source: {type: mqtt, topic: sentinel/pi-basement}}
  - {id: sentinel-pi-attic, gateway: pi-attic, building: main, room: boiler-room,
     source: {type: mqtt, topic: sentinel/pi-attic}}
"""

#: One input message: (arrival time, gateway key, readings) — or (time, key, None) for a tick.
Message = tuple[datetime, tuple[str, str], list[Reading] | None]


def write_config(
    directory: Path,
    bootstrap: str,
    *,
    base: Path = SCHOOL,
    sensors: Iterable[str] = (),
    **kafka: object,
) -> Path:
    """The school site with a Kafka section of its own (fresh topics and app id), and more
    thermometers of its gateway by id (the registry refuses sensors the config does not name)."""
    app = f"t{uuid.uuid4().hex[:10]}"
    settings = {
        "bootstrap": bootstrap,
        "app_id": app,
        "readings_topic": f"{app}-readings",
        "alarms_topic": f"{app}-alarms",
        "partitions": 2,
        "session_timeout": 6,
        "heartbeat": 1,
        "producer_max_batch_size": 1,
        "data_dir": str(directory / "faust-data"),
    } | kafka
    inline = ", ".join(f"{k}: {v}" for k, v in settings.items())
    more = "".join(
        f"  - {{id: {s}, building: main, room: basement, source: {{type: mqtt, topic: more/{s}}}}}\n"
        for s in sensors
    )
    text = base.read_text(encoding="utf-8")
    text = text.replace("\nsensors:\n", "\nsensors:\n" + SECOND_GATEWAY + more, 1)
    text += f"\nstream:\n  state: null\n  tick_every: 5s\n  kafka: {{{inline}}}\n"
    text += f"\ncases:\n  sqlite: {directory / 'cases.db'}\n"
    path = directory / "site.yaml"
    path.write_text(text, encoding="utf-8")
    return path


class Worker:
    """A worker process: `faust -A husvakt.faust_app worker` (rules only), or `husvakt stream
    --engine faust` (rules + MQTT ingest + case bridge) with `full=True`."""

    def __init__(
        self,
        config: Path,
        *,
        full: bool = False,
        metrics: str | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.log = config.parent / f"worker-{uuid.uuid4().hex[:6]}.log"
        if full:
            cmd = [sys.executable, "-m", "husvakt.cli", "-v", "stream", "--engine", "faust"]
            cmd += ["--config", str(config)]
            cmd += ["--metrics", metrics] if metrics else []
        else:
            faust = str(Path(sys.executable).parent / "faust")
            cmd = [faust, "-A", "husvakt.faust_app", "worker", "--without-web", "-l", "info"]
        env = os.environ | {"HUSVAKT_CONFIG": str(config), "PYTHONUNBUFFERED": "1"} | (env or {})
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                cmd, cwd=config.parent, env=env, stdout=out, stderr=subprocess.STDOUT
            )

    def kill(self) -> None:
        """A crash: SIGKILL, nothing flushed."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        stop_process(self.proc, timeout=30)

    async def wait_for_output(self, text: str, *, timeout: float) -> bool:
        """Whether the worker logged `text` within `timeout` (a log line is the only signal
        another process gives)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            if text in self.output():
                return True
            await asyncio.sleep(0.2)
        return text in self.output()

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


def fire(at: datetime, sensor: str, *, seq: int, gateway: str = "pi-basement") -> Reading:
    """A 99 °C reading at the school: a sentinel whose fire alarm says "all before me is done"."""
    return Reading(
        site="nordskolan",
        gateway=gateway,
        sensor=sensor,
        kind="temperature",
        value=99.0,
        unit="°C",
        ts=at,
        seq=seq,
    )


def batches(readings: Sequence[tuple[datetime, Reading]], size: int) -> list[Message]:
    """Consecutive arrivals of one gateway grouped into uplink batches of up to `size`."""
    out: list[Message] = []
    batch: list[Reading] = []
    for i, (at, reading) in enumerate(readings):
        batch.append(reading)
        last = i == len(readings) - 1
        if len(batch) == size or last or readings[i + 1][1].gateway != reading.gateway:
            out.append((at, (reading.site, reading.gateway), batch))
            batch = []
    return out


async def produce(
    bootstrap: str, topic: str, messages: Iterable[Message], *, max_batch_size: int = 16384
) -> None:
    """Send the messages in order. `max_batch_size` is aiokafka's bytes per partition and
    request: the producer keeps one request in flight per partition, so with small requests a
    benchmark measures the broker's round trips, not the worker."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_batch_size=max_batch_size
    )
    await producer.start()
    try:
        for at, (site, gateway), readings in messages:
            value = encode_tick(at) if readings is None else encode_batch(readings)
            await producer.send(
                topic,
                key=kafka_key(site, gateway),
                value=value,
                timestamp_ms=int(at.timestamp() * 1000),
            )
        await producer.flush()
    finally:
        await producer.stop()


async def consume_alarms(
    bootstrap: str, topic: str, *, sentinels: set[str], timeout: float = 180.0
) -> list[Alarm]:
    """Every distinct alarm on the topic, once the alarms of the `sentinels` sensors (sent
    last, so everything before them was acknowledged by Kafka) have arrived: read until they
    are all there, then to the end of every partition. Times out with what it has."""
    records = await alarm_records(bootstrap, topic, sentinels=sentinels, timeout=timeout)
    return sorted((alarm for alarm, _ in records), key=order)


async def alarm_records(
    bootstrap: str, topic: str, *, sentinels: set[str], timeout: float = 180.0
) -> list[tuple[Alarm, int]]:
    """`consume_alarms`, each alarm with its record's timestamp (ms since the epoch: when the
    worker sent it, by its clock), in the order read."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    await consumer.start()
    seen: dict[tuple[str, str, str], tuple[Alarm, int]] = {}

    def take(batch: dict) -> None:
        for records in batch.values():
            for record in records:
                alarm = Alarm.model_validate_json(record.value)
                seen.setdefault(
                    (alarm.episode, alarm.state, str(alarm.ts)), (alarm, record.timestamp)
                )

    try:
        async with asyncio.timeout(timeout):
            while not sentinels <= {a.sensor for a, _ in seen.values()}:
                take(await consumer.getmany(timeout_ms=1000))
            ends = await consumer.end_offsets(list(consumer.assignment()))
            for tp, end in ends.items():
                while await consumer.position(tp) < end:
                    take(await consumer.getmany(tp, timeout_ms=1000))
    except TimeoutError:
        pass
    finally:
        await consumer.stop()
    return list(seen.values())


def order(alarm: Alarm) -> tuple[str, str, datetime, str]:
    return (alarm.site, alarm.sensor, alarm.ts, alarm.state)
