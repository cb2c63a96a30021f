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
import json
import logging
import time
from collections.abc import Awaitable, Callable

import aiomqtt

from gateway.backoff import Backoff
from gateway.clock import Clock
from gateway.config import UplinkConfig
from gateway.models import Reading, format_ts
from gateway.outbox import SqliteOutbox
from gateway.secrets import tls_context

__all__ = ["LocalUplink", "MqttUplink", "readings_topic", "status_topic"]

log = logging.getLogger("husvakt.gateway.uplink")


def readings_topic(site: str, gateway: str) -> str:
    return f"husvakt/v1/{site}/{gateway}/readings"


def status_topic(site: str, gateway: str) -> str:
    return f"husvakt/v1/{site}/{gateway}/status"


async def _next_batch(outbox: SqliteOutbox, size: int, wait: float) -> list[tuple[int, str]]:
    """The oldest entries, or [] after `wait` seconds without any."""
    batch = await outbox.peek(size)
    if batch:
        return batch
    outbox.appended.clear()
    batch = await outbox.peek(size)  # appended between the peek and the clear?
    if batch:
        return batch
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(outbox.appended.wait(), wait)
    return await outbox.peek(size)


class MqttUplink:
    def __init__(
        self,
        *,
        config: UplinkConfig,
        site: str,
        gateway: str,
        clock: Clock,
        password: str | None = None,
    ) -> None:
        self._config = config
        self._site, self._gateway = site, gateway
        self._clock = clock
        self._password = password
        self._tls = tls_context(config.tls)
        self.published = 0

    def _status(self, state: str, outbox: SqliteOutbox | None) -> bytes:
        stats = outbox.stats if outbox else None
        return json.dumps(
            {
                "state": state,
                "ts": format_ts(self._clock.now()),
                "buffered": stats.buffered if stats else None,
                "thinned": stats.thinned if stats else None,
                "dropped": 0,
            }
        ).encode()

    async def run(self, outbox: SqliteOutbox) -> None:
        backoff = Backoff(cap=30.0)
        topic = readings_topic(self._site, self._gateway)
        status = status_topic(self._site, self._gateway)
        will = aiomqtt.Will(status, self._status("offline", None), qos=1, retain=True)
        while True:
            try:
                async with aiomqtt.Client(
                    hostname=self._config.host,
                    port=self._config.port,
                    identifier=f"husvakt-uplink-{self._site}-{self._gateway}",
                    clean_session=False,
                    username=self._config.username,
                    password=self._password,
                    tls_context=self._tls,
                    keepalive=self._config.keepalive,
                    will=will,
                    timeout=30,
                ) as client:
                    log.info("uplink connected to %s:%d", self._config.host, self._config.port)
                    backoff.reset()
                    await client.publish(status, self._status("online", outbox), qos=1, retain=True)
                    await self._drain(client, outbox, topic, status)
            except aiomqtt.MqttError as exc:
                delay = backoff.next_delay()
                log.warning(
                    "uplink: broker unavailable (%s); %d buffered; retrying in %.1fs",
                    exc,
                    outbox.stats.buffered,
                    delay,
                )
                await asyncio.sleep(delay)

    async def _drain(
        self, client: aiomqtt.Client, outbox: SqliteOutbox, topic: str, status: str
    ) -> None:
        last_status = time.monotonic()
        while True:
            batch = await _next_batch(outbox, self._config.batch, self._config.status_every)
            if batch:
                started = time.monotonic()
                payload = "[" + ",".join(body for _, body in batch) + "]"
                await client.publish(topic, payload.encode(), qos=1)
                await outbox.ack([row_id for row_id, _ in batch])
                self.published += len(batch)
                # A backlog drains at a bounded rate, so the broker and the rules downstream
                # are not flooded after an outage.
                pause = len(batch) / self._config.max_rate - (time.monotonic() - started)
                if pause > 0:
                    await asyncio.sleep(pause)
            if time.monotonic() - last_status >= self._config.status_every:
                await client.publish(status, self._status("online", outbox), qos=1, retain=True)
                last_status = time.monotonic()


class LocalUplink:
    """Hands readings from the outbox to an in-process consumer (the embedded rule engine),
    acknowledging each batch only after the consumer finished with it."""

    def __init__(
        self, *, consume: Callable[[list[Reading]], Awaitable[None]], batch: int = 500
    ) -> None:
        self._consume = consume
        self._batch = batch
        self.delivered = 0

    async def run(self, outbox: SqliteOutbox) -> None:
        while True:
            batch = await _next_batch(outbox, self._batch, 60.0)
            if not batch:
                continue
            await self._consume([Reading.model_validate_json(body) for _, body in batch])
            await outbox.ack([row_id for row_id, _ in batch])
            self.delivered += len(batch)
