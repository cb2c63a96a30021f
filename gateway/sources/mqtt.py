"""MQTT source: subscribes to each sensor's topic and decodes its payload.

paho-mqtt runs on the event loop and reads its socket in large gulps (`gateway.mqttloop`):
every message already received is handled in one go, with no thread between the broker and
the outbox (a thread of paho's own took one `select` and three reads per message, and traded
the interpreter with the event loop for each). paho does all of MQTT; the source reconnects
with capped, jittered backoff. A QoS 1 message is acknowledged only after its reading is
committed to the outbox (or after it was quarantined), on a persistent session: a gateway that
dies in between gets the message again when it comes back, so nothing it acknowledged is lost.
Nothing a message carries stops the source: whatever fails for one message quarantines that
message.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from functools import partial
from typing import Any

import paho.mqtt.client as mqtt

from gateway.backoff import Backoff, reconnect_forever
from gateway.clock import Clock
from gateway.config import GatewayConfig, MqttBrokerConfig, MqttPoint
from gateway.mqttack import PubackRun
from gateway.mqttclient import BrokerLogin
from gateway.mqttloop import LoopLink
from gateway.normalize import Sample
from gateway.protocols import Refused
from gateway.protocols.mqtt import MqttCodec
from gateway.quarantine import Quarantine
from gateway.sources import Emit

__all__ = ["MqttSource", "mqtt_sources"]

log = logging.getLogger("husvakt.gateway.mqtt")

#: Messages read but not handed on yet (the outbox is slower for a while); beyond, QoS 0
#: messages are dropped and counted (QoS 1 messages cannot pile up: the broker sends no more
#: than its in-flight window until we acknowledge).
INBOX = 100_000
#: Messages decoded and handed on together (one hand-over, one wake-up of the outbox writer)
RUN = 500

#: (receipt time, topic, payload, mid, qos)
Received = tuple[datetime, str, bytes, int, int]


class MqttSource:
    """All sensors read from one broker. `points`: (sensor id, how to decode) pairs, several
    of which may share a topic (or a mapping of topic to one such pair)."""

    def __init__(
        self,
        *,
        name: str,
        broker: MqttBrokerConfig,
        points: Mapping[str, tuple[str, MqttPoint]] | Sequence[tuple[str, MqttPoint]],
        clock: Clock,
        quarantine: Quarantine,
        client_id: str,
        password: str | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self._name = name
        self._broker = broker
        self._codec = MqttCodec(points)
        self._clock = clock
        self._quarantine = quarantine
        self._client_id = client_id
        self._login = BrokerLogin(broker, password, tls)

    @property
    def name(self) -> str:
        return self._name

    def _client(
        self,
        inbox: deque[Received],
        connected: Callable[[], None],
        lost: Callable[[str], None],
    ) -> mqtt.Client:
        client = self._login.looped_client(self._client_id)
        overflow = 0

        def on_connect(c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
            if reason.is_failure:
                log.warning("%s: broker refused the connection (%s)", self._name, reason)
                return
            c.subscribe([(topic, 1) for topic in self._codec.points])
            log.info("%s: subscribed to %d topics", self._name, len(self._codec.points))
            connected()

        def on_disconnect(_c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
            lost(str(reason))

        def on_message(_c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
            nonlocal overflow
            if len(inbox) >= INBOX and message.qos == 0:
                overflow += 1
                if overflow in (1, 1000) or overflow % 100_000 == 0:
                    log.error(
                        "%s: %d messages dropped: the gateway cannot keep up", self._name, overflow
                    )
                return
            try:
                topic = message.topic
            except UnicodeDecodeError:  # no sensor's: quarantined as such, and acknowledged
                topic = "\ufffd (not UTF-8)"
            payload = bytes(message.payload)
            inbox.append((self._clock.now(), topic, payload, message.mid, message.qos))

        client.on_connect = on_connect
        client.on_disconnect = on_disconnect
        client.on_message = on_message
        return client

    async def run(self, emit: Emit) -> None:
        loop = asyncio.get_running_loop()
        inbox: deque[Received] = deque()
        ready = asyncio.Event()

        def arrived() -> None:  # after each read of the socket
            if inbox:
                ready.set()

        backoff = Backoff()  # the session's, reset once the broker took the connection

        def connected() -> None:
            backoff.reset()

        def lost(why: str) -> None:
            link.disconnected(why)

        client = self._client(inbox, connected, lost)
        link = LoopLink(client, loop, arrived)
        acks = PubackRun(client, loop)
        client.connect_async(self._broker.host, self._broker.port, self._broker.keepalive)

        async def session(this: Backoff) -> None:
            nonlocal backoff
            backoff = this
            await link.connect()
            await link.lost.wait()
            raise ConnectionError(link.why)  # reconnect_forever says so, and waits its backoff

        async def hand_on() -> None:
            while True:
                await ready.wait()
                ready.clear()
                while inbox:
                    await self._hand_on(acks, inbox, emit)

        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(hand_on(), name=f"{self._name}: messages")
                tg.create_task(link.keepalive(), name=f"{self._name}: keepalive")
                await reconnect_forever(
                    session, errors=(OSError,), what=f"{self._name}: broker", log=log
                )
        finally:
            acks.flush()
            client.disconnect()
            link.close()

    async def _hand_on(self, acks: PubackRun, inbox: deque[Received], emit: Emit) -> None:
        """Decode a run of waiting messages (up to `RUN`) and hand their samples on at once. A
        message without a sample (quarantined) is acknowledged at once; the others when their
        readings are committed."""
        samples: list[Sample] = []
        while inbox and len(samples) < RUN:
            ts, topic, raw, mid, qos = inbox.popleft()
            # QoS 1 only (the subscriptions' maximum). On a connection gone since, the broker
            # sends the message again with the same packet id, which this acknowledges.
            ack = partial(acks.add, mid) if qos else None
            try:
                found = self._samples(topic, raw, ts, ack)
            except Exception as exc:  # one message never stops the source
                log.exception("%s: handling a message on %s failed", self._name, topic[:200])
                self._quarantine.add(
                    "mqtt-failed", f"{type(exc).__name__}: {exc}", source=topic, raw=raw
                )
                found = []
            if found:
                samples.extend(found)
            elif ack is not None:
                _acknowledge(ack)
        if samples:
            await emit(samples)

    def _samples(
        self, topic: str, raw: bytes, ts: datetime, ack: Callable[[], object] | None
    ) -> list[Sample]:
        """The message's samples, one per sensor it feeds (none: quarantined). The message is
        acknowledged once all of them are committed."""
        decoded = self._codec.decode_all(topic, raw)
        if isinstance(decoded, Refused):
            self._quarantine.add(decoded.reason, decoded.detail, source=topic, raw=raw)
            return []
        for each in decoded:
            if each.note is not None:
                self._quarantine.add(*each.note, source=topic, raw=raw)
        committed = ack if ack is None or len(decoded) == 1 else _AfterAll(len(decoded), ack)
        return [Sample.of(each, ts, committed) for each in decoded]


class _AfterAll:
    """Calls `ack` when called the `count`th time: a message that fed several sensors is
    acknowledged once, after the last of its readings is committed (a second PUBACK for its
    packet id could acknowledge another message that reused it)."""

    def __init__(self, count: int, ack: Callable[[], object]) -> None:
        self._left, self._ack = count, ack

    def __call__(self) -> None:
        self._left -= 1
        if self._left == 0:
            self._ack()


def _acknowledge(committed: Callable[[], object]) -> None:
    try:
        committed()
    except Exception:  # an acknowledgement that fails is sent again by the broker
        log.exception("acknowledging a message failed")


def mqtt_sources(
    config: GatewayConfig,
    sensors: Sequence[tuple[str, MqttPoint]],
    *,
    clock: Clock,
    quarantine: Quarantine,
) -> list[MqttSource]:
    """One source per broker that at least one of the sensors uses."""
    brokers: dict[str, list[tuple[str, MqttPoint]]] = {}
    for sensor_id, point in sensors:
        broker = point.broker or next(iter(config.mqtt_brokers))
        brokers.setdefault(broker, []).append((sensor_id, point))
    sources = []
    for broker_id, points in brokers.items():
        login = BrokerLogin.of(config.mqtt_brokers[broker_id])
        sources.append(
            MqttSource(
                name=f"mqtt:{broker_id}",
                broker=login.broker,
                points=points,
                clock=clock,
                quarantine=quarantine,
                client_id=f"husvakt-{config.site}-{config.id}-{broker_id}",
                password=login.password,
                tls=login.tls,
            )
        )
    return sources
