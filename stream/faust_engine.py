"""The scale-out engine: the same pure rules as Faust agents on Kafka.

Topics (the readings topic keyed `site/gateway`, so a gateway's messages and its rule state
share a partition):

- readings: one message per uplink batch, `{"readings": [...]}`, or the gateway's status
  `{"status": {"online": bool, "ts": ...}}`, or a clock tick `{"tick": ts}`; the message
  timestamp is when it arrived, which the rules use as "now" — so a topic replayed gives the
  same alarms every time;
- alarms: one message per alarm (the v1 contract), keyed `site/sensor/condition`.

Rule state is a Table with a changelog: per gateway, its own part under `site/gateway` and
each sensor's state under `site/gateway/sensor`, so a message costs the sensors it changed,
not the whole gateway. An alarm is sent and acknowledged by Kafka before the state that
produced it is written: a crash in between re-evaluates the message from the old state and
sends the same alarm again, which the case bridge recognises (at least once, never lost). The
sensors are written before their gateway's part; a crash between the two leaves sensors ahead
of their gateway, and a sensor does not apply a reading it has already applied (its last
seq), so re-evaluating the message changes nothing twice.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import faust

from gateway.config import SensorConfig
from gateway.quarantine import Quarantine
from gateway.wire import (
    Batch,
    Status,
    Tick,
    WireError,
    decode_kafka,
    encode_tick,
    parse_kafka_key,
)
from stream.config import KafkaConfig, RuleBase, StreamConfig
from stream.core import (
    GatewayTrack,
    decode_sensor,
    decode_track,
    encode_sensor,
    encode_track,
    on_status,
    on_tick,
    sensor_ids,
)
from stream.engine import YIELD_EVERY
from stream.intake import Intake, quarantine_rejected
from stream.models import Alarm
from stream.registry import Registry
from stream.table import RuleTable

__all__ = [
    "FaustEngine",
    "alarm_message_key",
]

log = logging.getLogger("husvakt.stream.faust")

#: Readings messages evaluated together, and how long the first waits for company (s). Faust
#: hands a group the events that reach it while it waits — none while the last group is being
#: evaluated — so the wait is what fills a group under load: at 5 ms a backlog came one message
#: to a group, and its sensors' state was written and sent to the changelog per message (19k
#: readings/s in bench.stream_throughput); at 50 ms a group holds a hundred or more (70–90k/s).
#: An alarm waits at most this long more before it is evaluated. At most 200 messages: a group
#: holds its messages until it is done (up to 200 MB of the largest ones Kafka takes).
GROUP = 200
GROUP_LINGER = 0.05


def alarm_message_key(alarm: Alarm) -> bytes:
    return f"{alarm.site}/{alarm.sensor}/{alarm.condition}".encode()


class FaustEngine:
    """A Faust app evaluating the rule table; `app` is what `faust -A husvakt.faust_app worker`
    runs."""

    def __init__(
        self,
        *,
        rules: tuple[RuleBase, ...],
        sensors: Mapping[tuple[str, str], SensorConfig],
        config: StreamConfig,
        registry: Registry | None = None,
        quarantine: Quarantine | None = None,
        timezones: Mapping[str, str] | None = None,
    ) -> None:
        kafka: KafkaConfig = config.kafka
        self.config = config
        self.table = RuleTable(rules, sensors, timezones)
        self.counts: Counter[str] = Counter()
        #: alarms by (condition, state), for the metrics
        self.alarm_counts: Counter[tuple[str, str]] = Counter()
        self.quarantine = quarantine or Quarantine()
        self._intake = Intake(
            table=self.table,
            registry=registry,
            quarantine=self.quarantine,
            counts=self.counts,
            late_after=config.late_after,
            max_skew=config.max_clock_skew,
        )
        self._decoded: dict[bytes, tuple[bytes, GatewayTrack]] = {}
        settings: dict[str, Any] = {
            "broker": f"kafka://{kafka.bootstrap.replace(',', ';kafka://')}",
            "store": "memory://",
            "topic_partitions": kafka.partitions,
            "topic_replication_factor": kafka.replication,
            "datadir": str(kafka.data_dir),
            "broker_session_timeout": kafka.session_timeout,
            "broker_heartbeat_interval": kafka.heartbeat,
            "processing_guarantee": "at_least_once",
            "consumer_auto_offset_reset": "earliest",
            "web_enabled": kafka.web_port is not None,
            "web_bind": "127.0.0.1",
            "web_port": kafka.web_port or 6066,
            "topic_allow_declare": True,
            "key_serializer": "raw",
            "value_serializer": "raw",
        }
        if kafka.producer_max_batch_size is not None:
            settings["producer_max_batch_size"] = kafka.producer_max_batch_size
        self.app = faust.App(kafka.app_id, **settings)
        # Keys and values are bytes we encode and decode ourselves: a message that does not
        # decode is quarantined by the agent instead of crashing it.
        self.readings = self._raw_topic(kafka.readings_topic, kafka.partitions)
        self.alarms = self._raw_topic(kafka.alarms_topic, kafka.partitions)
        self.tracks = self.app.Table(
            "rule-state",
            default=None,
            partitions=kafka.partitions,
            key_type=bytes,
            value_type=bytes,
        )
        self.app.agent(self.readings, name="evaluate")(self._evaluate)
        self.app.timer(interval=config.tick_every)(self._tick)

    def _raw_topic(self, name: str, partitions: int) -> faust.TopicT:
        return self.app.topic(
            name,
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
            partitions=partitions,
        )

    async def _evaluate(self, stream: faust.StreamT[bytes]) -> None:
        # The messages waiting are taken together (at most GROUP, the first waiting at most
        # GROUP_LINGER for company): each gateway's state is written once per group, however
        # many of its messages the group holds. Kafka's offsets are committed after the group.
        # take_events: in faust-streaming since 0.10, not in its StreamT protocol
        async for events in stream.take_events(GROUP, within=GROUP_LINGER):  # type: ignore[attr-defined]
            group: dict[bytes, tuple[int, GatewayTrack]] = {}
            for event in events:
                key = event.key if isinstance(event.key, bytes) else b""
                value = event.value if isinstance(event.value, bytes) else b""
                now = datetime.fromtimestamp(event.message.timestamp, UTC)
                await self.handle(key, value, now, group=group, partition=event.message.partition)
            for key, (partition, track) in group.items():
                self._save(key, track, partition)

    async def handle(
        self,
        key: bytes,
        value: bytes,
        now: datetime,
        *,
        group: dict[bytes, tuple[int, GatewayTrack]],
        partition: int,
    ) -> None:
        """One readings-topic message: decode, the same pure rules, send alarms; its track is
        left in `group` (by key, with the partition it belongs to) for the group's one save.
        Whatever about the message cannot be used is quarantined; nothing here stops the
        agent."""
        source = key[:100].decode("utf-8", "replace")
        try:
            site, gateway = parse_kafka_key(key)
            message = decode_kafka(value, site=site, gateway=gateway)
            if not self._intake.admits_gateway(site, gateway, source=source):
                return
            track = self._track(key, site, gateway, group)
            alarms = await self._apply(track, message, now, source)
        except WireError as exc:  # refused before anything changed
            self.quarantine.add(f"kafka-{exc.reason}", str(exc), source=source, raw=value)
            return
        except Exception as exc:
            # The track may be half-changed: forget it (the table's last write holds); the
            # group's earlier messages of this gateway are evaluated again from there when
            # Kafka delivers them again, or their changes are lost — never the alarms sent.
            log.exception("evaluating a message of %s failed", source)
            group.pop(key, None)
            self._decoded.pop(key, None)
            self.quarantine.add(
                "kafka-failed", f"{type(exc).__name__}: {exc}", source=source, raw=value
            )
            return
        for alarm in alarms:
            self.counts[f"alarms_{alarm.state}"] += 1
            self.alarm_counts[(alarm.condition, alarm.state)] += 1
            sent = await self.alarms.send(
                key=alarm_message_key(alarm), value=alarm.model_dump_json().encode()
            )
            await sent  # acknowledged by Kafka before the state that produced it is saved
        group[key] = (partition, track)

    def _track(
        self, key: bytes, site: str, gateway: str, group: dict[bytes, tuple[int, GatewayTrack]]
    ) -> GatewayTrack:
        """The gateway's track: this group's, else the one this worker last wrote while the
        table still holds exactly those bytes, else decoded from the table."""
        if key in group:
            return group[key][1]
        cached = self._decoded.pop(key, None)
        raw = self.tracks.get(key)
        if cached is not None and raw is not None and cached[0] is raw:
            return cached[1]
        if raw:
            return self._load(key, raw)
        return GatewayTrack(site=site, gateway=gateway)

    def _save(self, key: bytes, track: GatewayTrack, partition: int) -> None:
        """The sensors the group changed, then the gateway's own part (last: a sensor saved
        ahead of its gateway applies no reading twice), each in the local store and its
        changelog on the partition of the gateway's messages."""
        for sensor_id in track.changed:
            sensor = track.sensors.get(sensor_id)
            if sensor is not None:
                self._write(
                    _sensor_key(key, sensor_id), encode_sensor(sensor, samples=True), partition
                )
        track.changed.clear()
        encoded = encode_track(track, sensors=False)
        self._write(key, encoded, partition)
        self._decoded[key] = (encoded, track)

    def _write(self, key: bytes, value: bytes, partition: int) -> None:
        # What `table[key] = value` does inside a stream's iteration, with the partition given:
        # a group's events are no longer the "current event" the table would take it from.
        self.tracks.data[key] = value
        self.tracks.send_changelog(partition, key, value)

    def _load(self, key: bytes, raw: bytes) -> GatewayTrack:
        """A gateway's track from the table: its own part and each of its sensors' states."""
        track = decode_track(raw)
        if track.sensors:  # the older layout, every sensor inline: rewritten in the new one
            track.changed.update(track.sensors)
            return track
        for sensor_id in sensor_ids(raw):
            data = self.tracks.get(_sensor_key(key, sensor_id))
            if data:
                track.sensors[sensor_id] = decode_sensor(data)
        return track

    async def _apply(
        self, track: GatewayTrack, message: Batch | Status | Tick, now: datetime, source: str
    ) -> list[Alarm]:
        if isinstance(message, Status):
            return on_status(track, message.online, message.ts, self.table, now)
        if isinstance(message, Tick):
            return on_tick(track, self.table, message.at)
        quarantine_rejected(self.quarantine, message.rejected, source)
        alarms: list[Alarm] = []
        readings = message.readings
        for start in range(0, len(readings), YIELD_EVERY):
            if start:
                await asyncio.sleep(0)
            alarms += self._intake.readings(
                lambda _site, _gateway: track,
                readings[start : start + YIELD_EVERY],
                now,
                outbox=message.outbox,
                source=source,
            )
        return alarms

    async def _tick(self) -> None:
        now = datetime.now(UTC)
        for key in list(self.tracks.keys()):
            if isinstance(key, bytes) and key.count(b"/") == 1:  # a gateway, not a sensor
                await self.readings.send(key=key, value=encode_tick(now))


def _sensor_key(gateway_key: bytes, sensor: str) -> bytes:
    return gateway_key + b"/" + sensor.encode()
