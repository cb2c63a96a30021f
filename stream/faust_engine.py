"""The scale-out engine: the same pure rules as Faust agents on Kafka.

Topics (the readings topic keyed `site/gateway`, so a gateway's messages and its rule state
share a partition):

- readings: one message per uplink batch, `{"readings": [...]}`, or the gateway's status
  `{"status": {"online": bool, "ts": ...}}`, or a clock tick `{"tick": ts}`; the message
  timestamp is when it arrived, which the rules use as "now" — so a topic replayed gives the
  same alarms every time;
- alarms: one message per alarm (the v1 contract), keyed `site/sensor/condition`.

Rule state is a Table of one `GatewayTrack` per key, with a changelog. An alarm is sent and
acknowledged by Kafka before the state that produced it is written: a crash in between
re-evaluates the message from the old state and sends the same alarm again, which the case
bridge recognises (at least once, never lost).
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import faust
from pydantic import ValidationError

from gateway.config import SensorConfig
from gateway.models import Reading, format_ts
from gateway.quarantine import Quarantine
from stream.config import KafkaConfig, RuleBase, StreamConfig
from stream.core import (
    GatewayTrack,
    decode_track,
    encode_track,
    on_reading,
    on_status,
    on_tick,
)
from stream.models import Alarm
from stream.table import RuleTable

__all__ = [
    "FaustEngine",
    "alarm_key",
    "tick_message",
]

log = logging.getLogger("husvakt.stream.faust")


def alarm_key(alarm: Alarm) -> bytes:
    return f"{alarm.site}/{alarm.sensor}/{alarm.condition}".encode()


def tick_message(now: datetime) -> bytes:
    return json.dumps({"tick": format_ts(now)}).encode()


def _ts(text: str) -> datetime:
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        raise ValueError(f"timestamp {text!r} has no time zone")
    return value.astimezone(UTC)


class FaustEngine:
    """A Faust app evaluating the rule table; `app` is what `faust -A stream.app worker` runs."""

    def __init__(
        self,
        *,
        rules: tuple[RuleBase, ...],
        sensors: Mapping[tuple[str, str], SensorConfig],
        config: StreamConfig,
    ) -> None:
        kafka: KafkaConfig = config.kafka
        self.config = config
        self.table = RuleTable(rules, sensors)
        self.counts: Counter[str] = Counter()
        self.quarantine = Quarantine()
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
        async for event in stream.events():
            key = event.key if isinstance(event.key, bytes) else b""
            value = event.value if isinstance(event.value, bytes) else b""
            now = datetime.fromtimestamp(event.message.timestamp, UTC)
            await self.handle(key, value, now)

    async def handle(self, key: bytes, value: bytes, now: datetime) -> None:
        """One readings-topic message: decode, the same pure rules, send alarms, save state."""
        # The decoded track of what this worker last wrote, reused while the table still holds
        # exactly those bytes; dropped (decoded afresh) whenever anything goes wrong.
        cached = self._decoded.pop(key, None)
        try:
            site, gateway = key.decode().split("/", 1)
            raw = self.tracks.get(key)
            if cached is not None and raw is not None and cached[0] is raw:
                track = cached[1]
            elif raw:
                track = decode_track(raw)
            else:
                track = GatewayTrack(site=site, gateway=gateway)
            alarms = self._apply(track, json.loads(value), now)
        except (ValueError, KeyError, TypeError, ValidationError) as exc:
            self.quarantine.add("kafka-unusable", f"{key!r}: {exc}")
            return
        for alarm in alarms:
            self.counts[f"alarms_{alarm.state}"] += 1
            sent = await self.alarms.send(
                key=alarm_key(alarm), value=alarm.model_dump_json().encode()
            )
            await sent  # acknowledged by Kafka before the state that produced it is saved
        encoded = encode_track(track)
        self.tracks[key] = encoded
        self._decoded[key] = (encoded, track)

    def _apply(self, track: GatewayTrack, body: dict[str, Any], now: datetime) -> list[Alarm]:
        if "readings" in body:
            alarms: list[Alarm] = []
            for item in body["readings"]:
                reading = Reading.model_validate(item)
                produced, outcome = on_reading(
                    track, reading, self.table, now, late_after=self.config.late_after
                )
                self.counts["readings" if outcome == "evaluated" else outcome] += 1
                alarms.extend(produced)
            return alarms
        if "status" in body:
            status = body["status"]
            return on_status(track, bool(status["online"]), _ts(status["ts"]), self.table, now)
        if "tick" in body:
            return on_tick(track, self.table, _ts(body["tick"]))
        raise ValueError("neither readings, status nor tick")

    async def _tick(self) -> None:
        now = datetime.now(UTC)
        for key in list(self.tracks.keys()):
            await self.readings.send(key=key, value=tick_message(now))
