"""MQTT: a message's topic says which sensors (exact topics first, then patterns in config
order) — one device message can feed several (temperature and humidity from one payload, each
at its own `value_path`) — its payload the value, in the shape each sensor's `format` names."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from paho.mqtt.client import topic_matches_sub

from gateway.config import MqttPoint
from gateway.decode import decode_mqtt_value
from gateway.errors import DecodeError
from gateway.protocols import Decoded, Refused

__all__ = ["MqttCodec"]

#: (sensor id, how its value is read from the payload)
Point = tuple[str, MqttPoint]


class MqttCodec:
    """The topics of one broker's sensors: `points` maps a topic (or filter) to (sensor id, how
    to decode its payload), or lists (sensor id, point) pairs — several may share a topic."""

    def __init__(self, points: Mapping[str, Point] | Iterable[Point]) -> None:
        pairs = (
            [(topic, pair) for topic, pair in points.items()]
            if isinstance(points, Mapping)
            else [(pair[1].topic, pair) for pair in points]
        )
        self._by_topic: dict[str, list[Point]] = {}
        for topic, pair in pairs:
            self._by_topic.setdefault(topic, []).append(pair)
        self._patterns = [(t, p) for t, p in self._by_topic.items() if "+" in t or "#" in t]

    @property
    def points(self) -> list[str]:
        """The topics (and filters) to subscribe to."""
        return list(self._by_topic)

    def match(self, topic: str) -> list[Point]:
        """The sensors a message belongs to: those of its exact topic, else those of the first
        pattern (in config order) that matches; none when nothing does."""
        points = self._by_topic.get(topic)
        if points is not None:
            return points
        for pattern, candidates in self._patterns:
            if topic_matches_sub(pattern, topic):
                return candidates
        return []

    def decode(self, topic: str, payload: bytes) -> Decoded | Refused:
        """The message's value for its (first) sensor."""
        decoded = self.decode_all(topic, payload)
        return decoded if isinstance(decoded, Refused) else decoded[0]

    def decode_all(self, topic: str, payload: bytes) -> list[Decoded] | Refused:
        """The message's value for each sensor it feeds (each may fail on its own: a payload
        with a temperature and no humidity is a good reading and a fault)."""
        points = self.match(topic)
        if not points:
            return Refused("mqtt-unknown-topic", "no sensor reads this topic")
        return [_decode(sensor, how, payload) for sensor, how in points]


def _decode(sensor: str, how: MqttPoint, payload: bytes) -> Decoded:
    point = how.__dict__  # read once: a model's attribute costs several times a dict's item
    try:
        value, state = decode_mqtt_value(payload, point["format"], point["value_path"])
    except DecodeError as exc:
        return Decoded(sensor, fault=exc.reason, note=(f"mqtt-{exc.reason}", str(exc)))
    return Decoded(sensor, value=value, state=state)
