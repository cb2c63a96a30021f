"""Application-controlled acknowledgement of QoS 1 messages, in one place.

A message must be acknowledged (PUBACK) only once what it carried is safe — in the outbox, or
evaluated and recorded — so that a crash in between gets it again from the broker's persistent
session. paho-mqtt 2 supports that (`manual_ack_set`, `ack`: eclipse-paho/paho.mqtt.python#753),
but aiomqtt 2.5 does not expose it yet (empicano/aiomqtt#345, PR #346), and paho's `ack` sends
each PUBACK as a write of its own, with a wake-up of its network thread per message. This is
the only module that reaches into a client's insides: aiomqtt's paho client, and paho's queue
of packets to send (`PubackRun`). Delete the first when aiomqtt has the API.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Callable

import aiomqtt
import paho.mqtt.client as mqtt

__all__ = ["PubackRun", "ack", "manual_acks"]

log = logging.getLogger("husvakt.gateway.mqtt")

#: MQTT's PUBACK packet type (3.1.1 §3.4, 5.0 §3.4); its fixed header byte
PUBACK = 0x40


def manual_acks(client: aiomqtt.Client) -> None:
    """Leave PUBACKs to `ack` (call before connecting)."""
    client._client.manual_ack_set(True)


def ack(client: aiomqtt.Client, message: aiomqtt.Message) -> None:
    """Acknowledge `message`. On a connection that has gone since, this does nothing: the broker
    sends the message again on the next session, as it should."""
    if message.qos > 0:
        client._client.ack(message.mid, message.qos)


def puback_packets(mids: list[int]) -> bytes:
    """One PUBACK per packet id, back to back: a fixed header (type, remaining length 2) and
    the id, big-endian — each as one 32-bit word."""
    return struct.pack(f">{len(mids)}I", *[0x4002_0000 | mid for mid in mids])


class PubackRun:
    """The PUBACKs of a paho client (`manual_ack=True`) for its QoS 1 messages, gathered while
    the event loop runs and sent as one write when it is next free: one packet in paho's queue,
    one wake-up of its network thread, one `send` — where paho's `ack` takes one of each per
    message (a fifth of the gateway's event loop when it drains a backlog). `add` is called
    on the event loop's thread only. paho's queue takes any bytes as one packet and writes
    them in order with the others (pinned paho-mqtt; tests/gateway/test_sources.py sends a
    run through a real broker and sees none of it come again)."""

    def __init__(self, client: mqtt.Client, loop: asyncio.AbstractEventLoop) -> None:
        self._queue: Callable[[int, bytes, int, int], object] = client._packet_queue
        self._loop = loop
        self._mids: list[int] = []
        self.sent = 0

    def add(self, mid: int) -> None:
        """Acknowledge the QoS 1 message `mid` once the current run of the loop is over."""
        if not self._mids:
            self._loop.call_soon(self.flush)
        self._mids.append(mid)

    def flush(self) -> None:
        """Send what was added (also called on the way out, before disconnecting)."""
        mids, self._mids = self._mids, []
        if not mids:
            return
        try:
            self._queue(PUBACK, puback_packets(mids), 0, 0)
        except Exception:  # the broker sends what was not acknowledged again
            log.exception("acknowledging %d messages failed", len(mids))
            return
        self.sent += len(mids)
