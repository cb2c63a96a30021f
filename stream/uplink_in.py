"""Reading the gateways' uplink topics: batches of readings and their retained status.

A message is acknowledged (PUBACK) only after its handler returned — after the rules evaluated
its readings and the case bridge recorded their alarms, or after Kafka acknowledged the write —
and the session is persistent, so a crash in between gets the message again from the broker
(and the rules recognise readings they already saw by their seq).

Every message is decoded by `gateway.wire` (bounded and strict). What cannot be used — the whole
message, or single readings of a batch — is quarantined and acknowledged; a handler that fails
for any reason quarantines the message too. No message can stop the subscriber, so none can
kill it again on every restart by being delivered again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

import aiomqtt

from gateway.backoff import Backoff, reconnect_forever
from gateway.cancel import honour_cancellation
from gateway.config import MANUAL_GATEWAY, MqttBrokerConfig
from gateway.mqttack import ack, manual_acks
from gateway.mqttclient import BrokerLogin
from gateway.quarantine import Quarantine
from gateway.wire import (
    Batch,
    WireError,
    decode_batch,
    decode_status,
    readings_topic,
    status_topic,
    topic_ids,
)
from stream.intake import quarantine_rejected

__all__ = ["READINGS", "STATUS", "GatewayStatus", "UplinkSubscriber"]

log = logging.getLogger("husvakt.stream.uplink")

READINGS = readings_topic("+", "+")
#: Messages handled (and acknowledged) together at most, when the broker has them waiting.
MAX_GROUP = 500
STATUS = status_topic("+", "+")


@dataclass(frozen=True, slots=True)
class GatewayStatus:
    site: str
    gateway: str
    online: bool
    ts: datetime


class UplinkSubscriber:
    """Subscribes to every gateway's readings and status on one broker (QoS 1, persistent
    session, acknowledgement after handling). Unusable messages are quarantined — counted,
    kept with their first bytes, logged with a rate limit, acknowledged — and the rest go on."""

    def __init__(
        self,
        *,
        broker: MqttBrokerConfig,
        client_id: str,
        on_batch: Callable[[str, str, Batch], Awaitable[None]],
        on_status: Callable[[GatewayStatus], Awaitable[None]],
        on_settle: Callable[[], Awaitable[None]] | None = None,
        quarantine: Quarantine | None = None,
    ) -> None:
        self._broker = broker
        self._client_id = client_id
        self._on_batch = on_batch
        self._on_status = on_status
        self._on_settle = on_settle
        self._login = BrokerLogin.of(broker)
        self.quarantine = quarantine or Quarantine()
        self.messages = 0
        #: groups of messages settled (one rule-state save each) and acknowledged together
        self.groups = 0
        #: CPU seconds of the heaviest message so far (decode, evaluate, record)
        self.heaviest_cpu = 0.0
        self.subscribed = asyncio.Event()

    async def run(self) -> None:
        async def session(backoff: Backoff) -> None:
            client = self._login.async_client(self._client_id)
            manual_acks(client)
            try:
                async with client:
                    await client.subscribe([(READINGS, 1), (STATUS, 1)])
                    log.info(
                        "uplink subscription active on %s:%d", self._broker.host, self._broker.port
                    )
                    backoff.reset()
                    self.subscribed.set()
                    async for message in client.messages:
                        # what else is already waiting is handled with it, and settled (the
                        # rule state saved) once for all: a busy broker costs fewer commits
                        group = [message]
                        while len(client.messages) and len(group) < MAX_GROUP:
                            group.append(await anext(client.messages))
                        for each in group:
                            await self._handle(each)
                        await self._settle()
                        self.groups += 1
                        for each in group:
                            ack(client, each)
                        honour_cancellation()
            finally:
                self.subscribed.clear()

        await reconnect_forever(session, errors=(aiomqtt.MqttError,), what="uplink broker", log=log)

    async def _handle(self, message: aiomqtt.Message) -> None:
        topic = message.topic.value
        payload = message.payload if isinstance(message.payload, bytes) else b""
        self.messages += 1
        started = time.process_time()
        try:
            await self.handle(topic, payload)
        except WireError as exc:
            self.quarantine.add(f"uplink-{exc.reason}", str(exc), source=topic, raw=payload)
        except Exception as exc:
            log.exception("handling a message on %s failed", topic[:200])
            self.quarantine.add(
                "uplink-failed", f"{type(exc).__name__}: {exc}", source=topic, raw=payload
            )
        finally:
            self.heaviest_cpu = max(self.heaviest_cpu, time.process_time() - started)

    async def _settle(self) -> None:
        if self._on_settle is None:
            return
        try:
            await self._on_settle()
        except Exception:  # the alarms are recorded; a state that cannot be saved stops nothing
            log.exception("settling a group of uplink messages failed")

    async def handle(self, topic: str, payload: bytes) -> None:
        """One uplink message (public for tests and for other transports)."""
        site, gateway = topic_ids(topic)
        if gateway == MANUAL_GATEWAY:
            # readings by hand come from the case store, never over the broker: a message
            # naming that gateway is someone speaking for it
            raise WireError("reserved-gateway", f"{gateway!r} is the gateway of readings by hand")
        if topic.endswith("/status"):
            status = decode_status(payload)
            await self._on_status(GatewayStatus(site, gateway, status.online, status.ts))
            return
        batch = decode_batch(payload, site=site, gateway=gateway)
        quarantine_rejected(self.quarantine, batch.rejected, topic)
        if batch.readings:
            await self._on_batch(site, gateway, batch)
