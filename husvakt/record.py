"""`husvakt record`: uplinked readings from a broker to a JSON Lines trace for `replay`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime
from pathlib import Path

import aiomqtt

from gateway.wire import WireError, decode_batch, encode_trace_line, topic_ids

__all__ = ["record"]

log = logging.getLogger("husvakt.record")


async def record(
    *, host: str, port: int, topic: str, out: Path, stop: asyncio.Event, count: int | None = None
) -> int:
    """Append {"received", "reading"} lines until `stop` is set or `count` readings were
    written. Payloads that are not reading batches are counted and skipped."""
    written = skipped = 0
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("a", encoding="utf-8") as trace:
        async with aiomqtt.Client(host, port) as client:
            await client.subscribe(topic, qos=1)
            messages = aiter(client.messages)
            while not stop.is_set() and (count is None or written < count):
                waiter = asyncio.ensure_future(anext(messages))
                stopper = asyncio.ensure_future(stop.wait())
                done, _ = await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
                for task in (waiter, stopper):
                    if task not in done:
                        task.cancel()
                        with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                            await task
                if waiter not in done:
                    break
                message = waiter.result()
                received = datetime.now(UTC)
                payload = message.payload if isinstance(message.payload, bytes) else b""
                try:
                    site, gateway = topic_ids(message.topic.value)
                    batch = decode_batch(payload, site=site, gateway=gateway)
                except WireError:
                    skipped += 1
                    continue
                skipped += len(batch.rejected)
                for reading in batch.readings:
                    trace.write(encode_trace_line(received, reading) + "\n")
                    written += 1
                trace.flush()
    if skipped:
        log.warning("skipped %d messages and readings that were not usable", skipped)
    return written
