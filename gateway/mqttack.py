"""Application-controlled acknowledgement of QoS 1 messages on aiomqtt, in one place.

A message must be acknowledged (PUBACK) only once what it carried is safe — in the outbox, or
evaluated and recorded — so that a crash in between gets it again from the broker's persistent
session. paho-mqtt 2 supports that (`manual_ack_set`, `ack`: eclipse-paho/paho.mqtt.python#753),
but aiomqtt 2.5 does not expose it yet (empicano/aiomqtt#345, PR #346). Until it does, this is
the only module that reaches into aiomqtt's paho client; delete it when aiomqtt has the API.
"""

from __future__ import annotations

import aiomqtt

__all__ = ["ack", "manual_acks"]


def manual_acks(client: aiomqtt.Client) -> None:
    """Leave PUBACKs to `ack` (call before connecting)."""
    client._client.manual_ack_set(True)


def ack(client: aiomqtt.Client, message: aiomqtt.Message) -> None:
    """Acknowledge `message`. On a connection that has gone since, this does nothing: the broker
    sends the message again on the next session, as it should."""
    if message.qos > 0:
        client._client.ack(message.mid, message.qos)
