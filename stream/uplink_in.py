"""Reading the gateways' uplink topics: batches of readings and their retained status.

A message is acknowledged (PUBACK) only after its handler returned — after the rules evaluated
its readings and the case bridge recorded their alarms, or after Kafka acknowledged the write —
and the session is persistent, so a crash in between gets the message again from the broker
(and the rules recognise readings they already saw by their seq).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

import aiomqtt
from pydantic import ValidationError

from gateway.backoff import Backoff
from gateway.cancel import honour_cancellation
from gateway.config import MqttBrokerConfig
from gateway.models import Reading
from gateway.quarantine import Quarantine
from gateway.secrets import read_secret, tls_context

__all__ = ["READINGS", "STATUS", "GatewayStatus", "UplinkSubscriber", "parse_batch", "parse_status"]

log = logging.getLogger("husvakt.stream.uplink")

READINGS = "husvakt/v1/+/+/readings"
STATUS = "husvakt/v1/+/+/status"


@dataclass(frozen=True, slots=True)
class GatewayStatus:
    site: str
    gateway: str
    online: bool
    ts: datetime


def _topic_ids(topic: str) -> tuple[str, str]:
    parts = topic.split("/")
    return parts[2], parts[3]


def parse_batch(topic: str, payload: bytes) -> list[Reading]:
    """A readings message. Raises ValueError or TypeError naming what is wrong (the whole
    batch is refused: a gateway sends what its own outbox validated, so one bad reading means a
    bad sender)."""
    site, gateway = _topic_ids(topic)
    try:
        batch = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"not JSON ({exc})") from exc
    if not isinstance(batch, list):
        raise TypeError("not a JSON array of readings")
    readings = []
    for i, item in enumerate(batch):
        try:
            reading = Reading.model_validate(item)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ValueError(f"reading [{i}] {where}: {first['msg']}") from exc
        if (reading.site, reading.gateway) != (site, gateway):
            raise ValueError(
                f"reading [{i}] is from {reading.site}/{reading.gateway}, "
                f"published on {site}/{gateway}'s topic"
            )
        readings.append(reading)
    return readings


def parse_status(topic: str, payload: bytes) -> GatewayStatus:
    site, gateway = _topic_ids(topic)
    try:
        body = json.loads(payload)
        state = body["state"]
        ts = datetime.fromisoformat(str(body["ts"]).replace("Z", "+00:00"))
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise ValueError(f"not a status message ({exc})") from exc
    if state not in ("online", "offline") or ts.tzinfo is None:
        raise ValueError(f"not a status message (state {state!r}, ts {body.get('ts')!r})")
    return GatewayStatus(site, gateway, state == "online", ts)


class UplinkSubscriber:
    """Subscribes to every gateway's readings and status on one broker (QoS 1, persistent
    session, acknowledgement after handling). Unusable messages are quarantined — counted,
    logged with a rate limit, acknowledged and dropped — and the rest go on."""

    def __init__(
        self,
        *,
        broker: MqttBrokerConfig,
        client_id: str,
        on_readings: Callable[[list[Reading]], Awaitable[None]],
        on_status: Callable[[GatewayStatus], Awaitable[None]],
    ) -> None:
        self._broker = broker
        self._client_id = client_id
        self._on_readings = on_readings
        self._on_status = on_status
        self._password = read_secret(broker.password_file)
        self._tls = tls_context(broker.tls)
        self.quarantine = Quarantine()
        self.messages = 0
        self.subscribed = asyncio.Event()

    async def run(self) -> None:
        backoff = Backoff(cap=30.0)
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
                    timeout=30,
                )
                # aiomqtt acknowledges on arrival; paho can leave it to us (after handling).
                client._client.manual_ack_set(True)
                async with client:
                    await client.subscribe([(READINGS, 1), (STATUS, 1)])
                    log.info(
                        "uplink subscription active on %s:%d", self._broker.host, self._broker.port
                    )
                    backoff.reset()
                    self.subscribed.set()
                    async for message in client.messages:
                        await self._handle(message)
                        client._client.ack(message.mid, message.qos)
                        honour_cancellation()
            except aiomqtt.MqttError as exc:
                honour_cancellation()
                self.subscribed.clear()
                delay = backoff.next_delay()
                log.warning("uplink broker unavailable (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)

    async def _handle(self, message: aiomqtt.Message) -> None:
        topic = message.topic.value
        payload = message.payload if isinstance(message.payload, bytes) else b""
        self.messages += 1
        try:
            if topic.endswith("/status"):
                status = parse_status(topic, payload)
            else:
                readings = parse_batch(topic, payload)
        except (ValueError, TypeError) as exc:
            self.quarantine.add("uplink-unusable", f"{topic}: {exc}")
            return
        if topic.endswith("/status"):
            await self._on_status(status)
        elif readings:
            await self._on_readings(readings)
