"""A thermometer that publishes JSON over MQTT, like an ESP32 node on the school's Wi-Fi."""

from __future__ import annotations

import asyncio
import json
import logging

import aiomqtt

from firmware_sim.signal import Clock, Profile

__all__ = ["MqttThermometer"]

log = logging.getLogger("husvakt.sim.mqtt")


def _honour_cancellation() -> None:
    """Python 3.11's `asyncio.wait_for` (inside aiomqtt's publish) can swallow a cancellation
    that arrives as the broker's PUBACK does; the task then goes on, told to stop. Re-raise it.
    (firmware_sim imports nothing of ours; `gateway.cancel` has the same for the gateway.)"""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class MqttThermometer:
    """Publishes `{"temperature": v}` to `topic` every `interval` simulated seconds (QoS 1)."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        topic: str,
        profile: Profile,
        clock: Clock,
        interval: float = 60.0,
        client_id: str = "sim-mqtt-thermometer",
    ) -> None:
        self._host, self._port = host, port
        self._topic = topic
        self._profile = profile
        self._clock = clock
        self._interval = interval
        self._client_id = client_id
        self.published = 0

    async def run(self) -> None:
        while True:
            try:
                async with aiomqtt.Client(
                    self._host, self._port, identifier=self._client_id
                ) as client:
                    while True:
                        value = self._profile.value_at(self._clock.now())
                        payload = (
                            json.dumps({"temperature": value})
                            if isinstance(value, float)
                            else str(value)
                        )
                        await client.publish(self._topic, payload, qos=1)
                        self.published += 1
                        _honour_cancellation()
                        await self._clock.sleep(self._interval)
            except aiomqtt.MqttError as exc:
                # A cancellation can come back as MqttError (the disconnect on the way out of
                # `async with` timing out): stop, do not reconnect.
                _honour_cancellation()
                log.warning("simulated thermometer lost the broker (%s); reconnecting", exc)
                await asyncio.sleep(0.2)
