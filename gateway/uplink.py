"""Uplinks: drain the outbox towards the rules, acknowledging only what was confirmed.

`MqttUplink` publishes batches (JSON arrays) on `husvakt/v1/{site}/{gateway}/readings` at QoS 1
with a persistent session and removes them from the outbox after the broker's PUBACK; a retained
status on `…/status` says online (with buffered and thinned counts), and the broker's last will
says offline. `LocalUplink` is the all-in-one runtime's in-process uplink through the same
outbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

import aiomqtt

from gateway.backoff import Backoff, reconnect_forever
from gateway.cancel import honour_cancellation
from gateway.clock import Clock
from gateway.config import UplinkConfig
from gateway.models import Reading
from gateway.mqttclient import BrokerLogin
from gateway.outbox import SqliteOutbox
from gateway.secrets import tls_context
from gateway.wire import (
    Status,
    decode_batch,
    encode_bodies,
    encode_kafka_status,
    encode_status,
    kafka_key,
    readings_topic,
    status_topic,
)

__all__ = ["KafkaUplink", "LocalUplink", "MqttUplink"]

log = logging.getLogger("husvakt.gateway.uplink")


async def _next_batch(
    outbox: SqliteOutbox, size: int, wait: float, linger: float = 0.0
) -> list[tuple[int, str]]:
    """The oldest entries, or [] after `wait` seconds without any. A batch smaller than `size`
    waits `linger` seconds for more, so a busy gateway sends fewer, larger messages."""
    batch = await outbox.peek(size)
    if batch:
        if len(batch) < size and linger > 0:
            await asyncio.sleep(linger)
            return await outbox.peek(size)
        return batch
    outbox.appended.clear()
    batch = await outbox.peek(size)  # appended between the peek and the clear?
    if batch:
        return batch
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(outbox.appended.wait(), wait)
    if linger > 0:
        await asyncio.sleep(linger)
    return await outbox.peek(size)


async def _until_lost(client: aiomqtt.Client, drain: Awaitable[None]) -> None:
    """Run `drain` until the connection is lost, and say so at once: an idle uplink (no
    readings, its next status a minute away) would otherwise learn of it only at its next
    publish, and its metrics and /readyz would call it connected until then. The batch in
    flight stays in the outbox and goes again on the next connection (the server drops a
    repeat by its seq). aiomqtt 2.5 (pinned) keeps the loss in `_disconnected`, the future its
    own message iterator waits on."""
    lost: asyncio.Future[None] = client._disconnected
    work = asyncio.ensure_future(drain)
    try:
        await asyncio.wait({work, lost}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not work.done():
            work.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await work
    exc = lost.exception() if lost.done() and not lost.cancelled() else None
    if work.done() and not work.cancelled():
        work.result()  # the drain's own error (a publish that failed) goes up as it was
    raise aiomqtt.MqttError(f"connection lost: {exc or 'the broker closed it'}")


class _Health:
    """What the metrics and /readyz read of an uplink: whether it is connected, when the
    broker last acknowledged (epoch seconds), how many readings went, and a hook told each
    batch's latency (its oldest reading to the acknowledgement)."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self.connected = False
        self.last_ack: float | None = None
        self.on_ack: Callable[[float], None] | None = None
        self.published = 0

    async def _oldest(self, outbox: SqliteOutbox) -> float | None:
        """The oldest reading's time, when someone listens for the latency."""
        return await outbox.oldest() if self.on_ack is not None else None

    def _acked(self, oldest: float | None, readings: int) -> None:
        """The broker acknowledged a batch of `readings` (the oldest taken at `oldest`)."""
        self.published += readings
        self.last_ack = acked = self._clock.now().timestamp()
        if oldest is not None and self.on_ack is not None:
            self.on_ack(max(0.0, acked - oldest))


class MqttUplink(_Health):
    def __init__(
        self,
        *,
        config: UplinkConfig,
        site: str,
        gateway: str,
        clock: Clock,
        password: str | None = None,
    ) -> None:
        super().__init__(clock)
        self._config = config
        self._site, self._gateway = site, gateway
        self._login = BrokerLogin(config, password, tls_context(config.tls))

    async def _status(self, state: str, outbox: SqliteOutbox | None) -> bytes:
        stats = outbox.stats if outbox else None
        now = self._clock.now()
        oldest = await outbox.oldest() if outbox else None
        return encode_status(
            Status(
                online=state == "online",
                ts=now,
                buffered=stats.buffered if stats else None,
                thinned=stats.thinned if stats else None,
                dropped=0,
                lag=None if oldest is None else round(max(0.0, now.timestamp() - oldest), 3),
                no_room=bool(stats and stats.no_room),
            )
        )

    async def run(self, outbox: SqliteOutbox) -> None:
        topic = readings_topic(self._site, self._gateway)
        status = status_topic(self._site, self._gateway)
        will = aiomqtt.Will(status, await self._status("offline", None), qos=1, retain=True)

        async def session(backoff: Backoff) -> None:
            identifier = f"husvakt-uplink-{self._site}-{self._gateway}"
            async with self._login.async_client(identifier, will=will) as client:
                log.info("uplink connected to %s:%d", self._config.host, self._config.port)
                backoff.reset()
                self.connected = True
                try:
                    await client.publish(
                        status, await self._status("online", outbox), qos=1, retain=True
                    )
                    await _until_lost(client, self._drain(client, outbox, topic, status))
                finally:
                    self.connected = False

        await reconnect_forever(
            session,
            errors=(aiomqtt.MqttError,),
            what="uplink: broker",
            log=log,
            state=lambda: f"; {outbox.stats.buffered} buffered",
        )

    async def _drain(
        self, client: aiomqtt.Client, outbox: SqliteOutbox, topic: str, status: str
    ) -> None:
        last_status = time.monotonic()
        # what was held when the connection came up is the backlog of an outage: it drains at a
        # bounded rate; what is read while connected goes at once, however fast it comes
        backlog_until = await outbox.last_id()
        while True:
            batch = await _next_batch(
                outbox, self._config.batch, self._config.status_every, self._config.linger
            )
            if batch:
                started = time.monotonic()
                oldest = await self._oldest(outbox)
                payload = encode_bodies((body for _, body in batch), outbox=outbox.id)
                await client.publish(topic, payload, qos=1)
                self._acked(oldest, len(batch))
                await outbox.ack([row_id for row_id, _ in batch])
                honour_cancellation()
                # A backlog drains at a bounded rate, so the broker and the rules downstream
                # are not flooded after an outage.
                pause = len(batch) / self._config.max_rate - (time.monotonic() - started)
                if pause > 0 and batch[-1][0] <= backlog_until:
                    await asyncio.sleep(pause)
            if time.monotonic() - last_status >= self._config.status_every:
                await client.publish(
                    status, await self._status("online", outbox), qos=1, retain=True
                )
                last_status = time.monotonic()


class KafkaUplink(_Health):
    """Batches from the outbox to the Kafka readings topic (acks=all); a batch leaves the
    outbox only after Kafka acknowledged it. A status message goes out every `status_every`
    (Kafka has no last will: the rules notice a silent gateway by its silence)."""

    def __init__(self, *, config: UplinkConfig, site: str, gateway: str, clock: Clock) -> None:
        assert config.kafka is not None, "a Kafka uplink needs the bootstrap servers"
        super().__init__(clock)
        self._config = config
        self._bootstrap = config.kafka
        self._key = kafka_key(site, gateway)

    async def run(self, outbox: SqliteOutbox) -> None:
        from aiokafka import AIOKafkaProducer  # noqa: PLC0415 - an optional extra
        from aiokafka.errors import KafkaError  # noqa: PLC0415

        topic = self._config.kafka_topic

        async def session(backoff: Backoff) -> None:
            producer = AIOKafkaProducer(
                bootstrap_servers=self._bootstrap, acks="all", request_timeout_ms=30_000
            )
            try:
                await producer.start()
                log.info("uplink connected to Kafka at %s", self._bootstrap)
                backoff.reset()
                self.connected = True
                last_status = -float("inf")
                while True:
                    if time.monotonic() - last_status >= self._config.status_every:
                        status = encode_kafka_status(Status(True, self._clock.now()))
                        await producer.send_and_wait(topic, key=self._key, value=status)
                        last_status = time.monotonic()
                    batch = await _next_batch(
                        outbox, self._config.batch, self._config.status_every, self._config.linger
                    )
                    if not batch:
                        continue
                    oldest = await self._oldest(outbox)
                    payload = encode_bodies((body for _, body in batch), outbox=outbox.id)
                    await producer.send_and_wait(topic, key=self._key, value=payload)
                    self._acked(oldest, len(batch))
                    await outbox.ack([row_id for row_id, _ in batch])
            finally:
                self.connected = False
                with contextlib.suppress(Exception):
                    await producer.stop()

        await reconnect_forever(
            session,
            errors=(KafkaError,),
            what="uplink: Kafka",
            log=log,
            state=lambda: f"; {outbox.stats.buffered} buffered",
        )


class LocalUplink:
    """Hands readings from the outbox to an in-process consumer (the embedded rule engine),
    acknowledging each batch only after the consumer finished with it."""

    def __init__(
        self, *, consume: Callable[[list[Reading], str], Awaitable[None]], batch: int = 500
    ) -> None:
        self._consume = consume
        self._batch = batch
        self.delivered = 0

    async def run(self, outbox: SqliteOutbox) -> None:
        while True:
            batch = await _next_batch(outbox, self._batch, 60.0)
            if not batch:
                continue
            payload = encode_bodies((body for _, body in batch), outbox=outbox.id)
            decoded = decode_batch(payload)
            for refused in decoded.rejected:  # written by an older husvakt, say
                log.error("outbox entry refused: %s: %s", refused.reason, refused.detail)
            await self._consume(list(decoded.readings), outbox.id)
            await outbox.ack([row_id for row_id, _ in batch])
            self.delivered += len(batch)
