"""MQTT: a message's topic says which sensor (exact topics first, then patterns in config
order), its payload the value, in the shape the sensor's `format` names."""

from __future__ import annotations

from collections.abc import Mapping

from paho.mqtt.client import topic_matches_sub

from gateway.config import MqttPoint
from gateway.decode import decode_mqtt_value
from gateway.errors import DecodeError
from gateway.protocols import Decoded, Refused

__all__ = ["MqttCodec"]


class MqttCodec:
    """The topics of one broker's sensors: `points` maps a topic (or filter) to (sensor id,
    how to decode its payload)."""

    def __init__(self, points: Mapping[str, tuple[str, MqttPoint]]) -> None:
        self.points = dict(points)
        self._patterns = [(t, p) for t, p in self.points.items() if "+" in t or "#" in t]

    def match(self, topic: str) -> tuple[str, MqttPoint] | None:
        """The sensor a message belongs to: its exact topic, else the first pattern (in config
        order) that matches."""
        point = self.points.get(topic)
        if point is not None:
            return point
        for pattern, candidate in self._patterns:
            if topic_matches_sub(pattern, topic):
                return candidate
        return None

    def decode(self, topic: str, payload: bytes) -> Decoded | Refused:
        point = self.match(topic)
        if point is None:
            return Refused("mqtt-unknown-topic", "no sensor reads this topic")
        sensor, how = point
        try:
            value, state = decode_mqtt_value(payload, how.format, how.value_path)
        except DecodeError as exc:
            return Decoded(sensor, fault=exc.reason, note=(f"mqtt-{exc.reason}", str(exc)))
        return Decoded(sensor, value=value, state=state)
