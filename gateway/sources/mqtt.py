"""MQTT source: subscribes to each sensor's topic and decodes its payload.

A QoS 1 message is acknowledged only after its reading is committed to the outbox (or after it
was quarantined), on a persistent session: a gateway that dies in between gets the message
again when it comes back, so nothing it acknowledged is lost. Nothing a message carries stops
the source: whatever fails for one message quarantines that message.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable, Mapping

import aiomqtt

from gateway.backoff import Backoff
from gateway.cancel import honour_cancellation
from gateway.clock import Clock
from gateway.config import MqttBrokerConfig, MqttPoint
from gateway.decode import decode_mqtt
from gateway.errors import DecodeError
from gateway.mqttack import ack, manual_acks
from gateway.normalize import Sample
from gateway.quarantine import Quarantine
from gateway.sources import Emit

__all__ = ["MqttSource"]

log = logging.getLogger("husvakt.gateway.mqtt")


class MqttSource:
    """All sensors read from one broker. `points` maps a topic to (sensor id, how to decode)."""

    def __init__(
        self,
        *,
        name: str,
        broker: MqttBrokerConfig,
        points: Mapping[str, tuple[str, MqttPoint]],
        clock: Clock,
        quarantine: Quarantine,
        client_id: str,
        password: str | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self._name = name
        self._broker = broker
        self._points = dict(points)
        self._patterns = [(t, p) for t, p in self._points.items() if "+" in t or "#" in t]
        self._clock = clock
        self._quarantine = quarantine
        self._client_id = client_id
        self._password = password
        self._tls = tls

    @property
    def name(self) -> str:
        return self._name

    async def run(self, emit: Emit) -> None:
        backoff = Backoff()
        while True:
            try:
                client = aiomqtt.Client(
                    hostname=self._broker.host,
                    port=self._broker.port,
                    identifier=self._client_id,
                    clean_session=False,
                    username=self._broker.username,
                    password=self._password,
                    tls_context=self._tls,
                    keepalive=self._broker.keepalive,
                )
                manual_acks(client)
                async with client:
                    for topic in self._points:
                        await client.subscribe(topic, qos=1)
                    log.info("%s: subscribed to %d topics", self._name, len(self._points))
                    backoff.reset()
                    async for message in client.messages:
                        await self._receive(client, message, emit)
                        honour_cancellation()
            except aiomqtt.MqttError as exc:
                honour_cancellation()
                delay = backoff.next_delay()
                log.warning(
                    "%s: broker unavailable (%s); retrying in %.1fs", self._name, exc, delay
                )
                await asyncio.sleep(delay)

    def _match(self, topic: str) -> tuple[str, MqttPoint] | None:
        """The sensor a message belongs to: its exact topic, else the first pattern (in config
        order) that matches."""
        point = self._points.get(topic)
        if point is not None:
            return point
        for pattern, candidate in self._patterns:
            if aiomqtt.Topic(topic).matches(pattern):
                return candidate
        return None

    async def _receive(self, client: aiomqtt.Client, message: aiomqtt.Message, emit: Emit) -> None:
        def committed() -> None:
            ack(client, message)

        topic = str(message.topic)
        raw = message.payload if isinstance(message.payload, bytes) else b""
        try:
            queued = await self._handle(topic, raw, emit, committed)
        except Exception as exc:  # one message never stops the source
            log.exception("%s: handling a message on %s failed", self._name, topic[:200])
            self._quarantine.add(
                "mqtt-failed", f"{type(exc).__name__}: {exc}", source=topic, raw=raw
            )
            queued = False
        if not queued:
            committed()

    async def _handle(
        self, topic: str, raw: bytes, emit: Emit, committed: Callable[[], None]
    ) -> bool:
        """Hand the message's sample on; False when there was none to hand (quarantined), so
        the caller acknowledges the message at once."""
        point = self._match(topic)
        if point is None:
            self._quarantine.add(
                "mqtt-unknown-topic", "no sensor reads this topic", source=topic, raw=raw
            )
            return False
        sensor, how = point
        ts = self._clock.now()
        try:
            value = decode_mqtt(raw, how.format, how.value_path)
        except DecodeError as exc:
            self._quarantine.add(f"mqtt-{exc.reason}", str(exc), source=topic, raw=raw)
            await emit(Sample(sensor=sensor, ts=ts, fault=exc.reason, committed=committed))
            return True
        await emit(Sample(sensor=sensor, ts=ts, value=value, committed=committed))
        return True
