"""A thermometer that publishes over MQTT, like an ESP32 node on the school's Wi-Fi."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

import aiomqtt

from firmware_sim import encode
from firmware_sim.play import Clock, play
from firmware_sim.scenario import Output

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
    """Publishes a scenario device's outputs to `topic` as they come due (QoS 1), in the
    device's payload shape (`encode.mqtt_message`). An output the broker did not take
    (the connection dropped) is sent again after the reconnect; the run ends with the outputs.
    """

    def __init__(
        self,
        *,
        host: str,
        port: int,
        topic: str,
        outputs: Iterable[Output],
        clock: Clock,
        client_id: str = "sim-mqtt-thermometer",
    ) -> None:
        self._host, self._port = host, port
        self._topic = topic
        self._outputs = iter(outputs)
        self._clock = clock
        self._client_id = client_id
        self._unsent: Output | None = None
        self.published = 0

    async def run(self) -> None:
        while True:
            try:
                async with aiomqtt.Client(
                    self._host, self._port, identifier=self._client_id
                ) as client:

                    async def publish(output: Output) -> None:
                        self._unsent = output
                        payload = encode.mqtt_message(output)
                        if payload is not None:
                            await client.publish(self._topic, payload.encode(), qos=1)
                            self.published += 1
                        self._unsent = None
                        _honour_cancellation()

                    if self._unsent is not None:
                        await publish(self._unsent)
                    await play(self._outputs, self._clock, publish)
                    return
            except aiomqtt.MqttError as exc:
                # A cancellation can come back as MqttError (the disconnect on the way out of
                # `async with` timing out): stop, do not reconnect.
                _honour_cancellation()
                log.warning("simulated thermometer lost the broker (%s); reconnecting", exc)
                await asyncio.sleep(0.2)
