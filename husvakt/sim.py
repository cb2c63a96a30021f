"""`husvakt sim`: a scenario's devices, live, on their real protocols.

MQTT devices publish to a broker, Modbus devices are TCP servers on free loopback ports,
serial devices print on pseudo-terminals and 1-Wire probes are files in a fake sysfs tree —
each following the scenario's signal and faults on an accelerated clock. `husvakt sim` prints
where each device is, so a gateway config can point at them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import tty
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import aiomqtt

from firmware_sim import encode
from firmware_sim.modbus import ModbusThermometer
from firmware_sim.scenario import Device, Output, Scenario
from gateway.clock import ScaledClock
from husvakt.broker import free_port

__all__ = ["Endpoint", "run_sim"]


class _Latest:
    """The last output a Modbus device produced, read whenever the gateway polls."""

    output: Output | None = None

    def value_at(self, when: datetime) -> float | str:
        out = self.output
        if out is None or out.fault is not None or out.value is None:
            return out.fault if out and out.fault else "no reading yet"
        return out.value


#: What a live device does with each output as its moment comes.
Act = Callable[[Output], Awaitable[None]]


@dataclass(frozen=True)
class Endpoint:
    sensor: str
    protocol: str
    where: str


async def run_sim(
    scenario: Scenario,
    *,
    speed: float,
    broker: tuple[str, int] | None,
    ready: asyncio.Event | None = None,
    endpoints: list[Endpoint] | None = None,
) -> list[Endpoint]:
    """Play the scenario on its devices until it ends. Fills `endpoints` and sets `ready` once
    every device is reachable."""
    clock = ScaledClock(start=scenario.start, speed=speed)
    found: list[Endpoint] = endpoints if endpoints is not None else []
    stops: list[Callable[[], Awaitable[None]]] = []
    sysfs = Path(tempfile.mkdtemp(prefix="husvakt-w1-"))
    ptys: list[int] = []

    async def timed(index: int, act: Act) -> None:
        for output in scenario.device_outputs(index):
            await clock.sleep_until(output.when)
            await act(output)

    async with contextlib.AsyncExitStack() as stack:
        tasks = []
        mqtt_client = None
        if any(d.protocol == "mqtt" for d in scenario.devices):
            if broker is None:
                raise ValueError("the scenario has MQTT devices: give --broker HOST:PORT")
            mqtt_client = await stack.enter_async_context(
                aiomqtt.Client(*broker, identifier="husvakt-sim")
            )
        for index, device in enumerate(scenario.devices):
            tasks.append(
                await _start_device(
                    index, device, clock, mqtt_client, sysfs, ptys, stops, found, timed
                )
            )
        if ready is not None:
            ready.set()
        try:
            await asyncio.gather(*tasks)
        finally:
            for stop in stops:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop(), 5)
            for fd in ptys:
                with contextlib.suppress(OSError):
                    os.close(fd)
    return found


async def _start_device(  # noqa: PLR0917 - internal wiring of one device
    index: int,
    device: Device,
    clock: ScaledClock,
    mqtt_client: aiomqtt.Client | None,
    sysfs: Path,
    ptys: list[int],
    stops: list[Callable[[], Awaitable[None]]],
    found: list[Endpoint],
    run: Callable[[int, Act], Awaitable[None]],
) -> asyncio.Future[None]:
    if device.protocol == "mqtt":
        topic = device.topic or f"sim/{device.sensor}"
        assert mqtt_client is not None

        async def publish(output: Output) -> None:
            printed = encode.text(output)
            if printed is not None:
                payload = encode.mqtt_payload(device.format, printed)
                await mqtt_client.publish(topic, payload.encode(), qos=1)

        found.append(Endpoint(device.sensor, "mqtt", f"topic {topic}"))
        return asyncio.ensure_future(run(index, publish))
    if device.protocol == "serial":
        master, slave = os.openpty()
        tty.setraw(slave)
        ptys.extend((master, slave))
        os.set_blocking(master, False)

        async def write(output: Output) -> None:
            line = encode.serial_line(device.sensor, output)
            if line is not None:
                with contextlib.suppress(BlockingIOError):
                    os.write(master, f"{line}\r\n".encode())

        found.append(Endpoint(device.sensor, "serial", os.ttyname(slave)))
        return asyncio.ensure_future(run(index, write))
    if device.protocol == "onewire":
        directory = sysfs / f"28-{index + 1:012x}"
        directory.mkdir(parents=True)

        async def store(output: Output) -> None:
            if output.fault in ("dropout", "reboot"):
                return
            (directory / "w1_slave").write_text(encode.w1_slave(output))

        found.append(Endpoint(device.sensor, "onewire", f"{sysfs} device {directory.name}"))
        return asyncio.ensure_future(run(index, store))
    # Modbus: a TCP server answering with the latest output at the moment it is read.
    current = _Latest()
    port = free_port()
    server = ModbusThermometer(host="127.0.0.1", port=port, profile=current, clock=clock)
    await server.start()
    stops.append(server.stop)

    async def hold(output: Output) -> None:
        current.output = output

    found.append(
        Endpoint(device.sensor, "modbus", f"127.0.0.1:{port} device 1 register 0 (0.1 °C)")
    )
    return asyncio.ensure_future(run(index, hold))
