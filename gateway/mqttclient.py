"""The one place MQTT clients are made from a broker's settings: who we are (the login, read
once), how we talk (TLS), and how a session behaves (persistent, so that QoS 1 messages
survive a reconnect). The gateway's source runs paho on the event loop itself
(`gateway.mqttloop`); the uplink and the stream's subscriber use aiomqtt."""

from __future__ import annotations

import ssl
from dataclasses import dataclass

import aiomqtt
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from gateway.config import MqttBrokerConfig
from gateway.mqttloop import BufferedClient
from gateway.secrets import read_secret, tls_context

__all__ = ["BrokerLogin"]

#: Seconds to wait for the broker when connecting or for an acknowledgement.
TIMEOUT = 30


@dataclass(frozen=True)
class BrokerLogin:
    """A broker's settings with its password (read from its file) and TLS context, made once."""

    broker: MqttBrokerConfig
    password: str | None
    tls: ssl.SSLContext | None

    @classmethod
    def of(cls, broker: MqttBrokerConfig) -> BrokerLogin:
        return cls(broker, read_secret(broker.password_file), tls_context(broker.tls))

    def async_client(
        self, identifier: str, *, will: aiomqtt.Will | None = None, persistent: bool = True
    ) -> aiomqtt.Client:
        """An aiomqtt client, on a persistent session unless told (a probe leaves none)."""
        return aiomqtt.Client(
            hostname=self.broker.host,
            port=self.broker.port,
            identifier=identifier,
            clean_session=not persistent,
            username=self.broker.username,
            password=self.password,
            tls_context=self.tls,
            keepalive=self.broker.keepalive,
            will=will,
            timeout=TIMEOUT,
        )

    def looped_client(self, identifier: str) -> mqtt.Client:
        """A paho client for the event loop (`gateway.mqttloop`) on a persistent session,
        acknowledging QoS 1 messages only when told (`gateway.mqttack.PubackRun`)."""
        client = BufferedClient(
            CallbackAPIVersion.VERSION2,
            client_id=identifier,
            clean_session=False,
            manual_ack=True,
        )
        if self.broker.username is not None:
            client.username_pw_set(self.broker.username, self.password)
        if self.tls is not None:
            client.tls_set_context(self.tls)
        return client
