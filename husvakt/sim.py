"""`husvakt sim`: a scenario's devices, live, on their real protocols.

MQTT devices publish to a broker, Modbus devices are TCP servers on free loopback ports,
serial devices print on pseudo-terminals and 1-Wire probes are files in a fake sysfs tree —
each following the scenario's signal and faults on an accelerated clock. `husvakt sim` prints
where each device is, so a gateway config can point at them.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from firmware_sim import encode
from firmware_sim.modbus import Layout, ModbusThermometer
from firmware_sim.mqtt import MqttThermometer
from firmware_sim.play import Clock, Playback, play
from firmware_sim.scenario import Device, Output, Scenario
from firmware_sim.serial import SerialThermometer
from husvakt.broker import free_port

__all__ = ["Endpoint", "run_sim"]


@dataclass(frozen=True)
class Endpoint:
    """Where a simulated device can be reached: `where` in words, and the parts a gateway
    config needs (MQTT topic; Modbus TCP port, device 1, register 0 in tenths of a °C; a serial
    pty's path; a 1-Wire sysfs base and device directory)."""

    sensor: str
    protocol: str
    where: str
    topic: str | None = None
    port: int | None = None
    path: str | None = None
    device: str | None = None


async def run_sim(
    scenario: Scenario,
    *,
    clock: Clock,
    broker: tuple[str, int] | None,
    ready: asyncio.Event | None = None,
    endpoints: list[Endpoint] | None = None,
    keep_serving: bool = False,
) -> list[Endpoint]:
    """Play the scenario on its devices until it ends (with `keep_serving`, until cancelled:
    polled devices keep showing their last output). Fills `endpoints` and sets `ready` once
    every device is reachable."""
    found: list[Endpoint] = endpoints if endpoints is not None else []
    if broker is None and any(d.protocol == "mqtt" for d in scenario.devices):
        raise ValueError("the scenario has MQTT devices: give --broker HOST:PORT")
    async with contextlib.AsyncExitStack() as stack:
        sysfs = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="husvakt-w1-")))
        runs = [
            await _start_device(index, device, scenario, clock, broker, sysfs, stack, found)
            for index, device in enumerate(scenario.devices)
        ]
        if ready is not None:
            ready.set()
        async with asyncio.TaskGroup() as tg:
            for index, run in enumerate(runs):
                tg.create_task(run(), name=f"sim {scenario.devices[index].sensor}")
        if keep_serving:
            await asyncio.Event().wait()
    return found


async def _start_device(  # noqa: PLR0917 - internal wiring of one device
    index: int,
    device: Device,
    scenario: Scenario,
    clock: Clock,
    broker: tuple[str, int] | None,
    sysfs: Path,
    stack: contextlib.AsyncExitStack,
    found: list[Endpoint],
) -> Callable[[], Coroutine[object, object, None]]:
    outputs = scenario.device_outputs(index)
    if device.protocol == "mqtt":
        assert broker is not None
        topic = device.mqtt_topic
        publisher = MqttThermometer(
            host=broker[0],
            port=broker[1],
            topic=topic,
            outputs=outputs,
            clock=clock,
            client_id=f"husvakt-sim-{device.sensor}",
        )
        found.append(Endpoint(device.sensor, "mqtt", f"topic {topic}", topic=topic))
        return publisher.run
    if device.protocol == "serial":
        line = SerialThermometer(name=device.sensor, outputs=outputs, clock=clock)
        stack.callback(line.close)
        found.append(Endpoint(device.sensor, "serial", line.path, path=line.path))
        return line.run
    if device.protocol == "onewire":
        directory = sysfs / f"28-{index + 1:012x}"
        directory.mkdir(parents=True)

        async def store(output: Output) -> None:
            if output.fault in ("dropout", "reboot"):
                return
            (directory / "w1_slave").write_text(encode.w1_slave(output))

        found.append(
            Endpoint(
                device.sensor,
                "onewire",
                f"{sysfs} device {directory.name}",
                path=str(sysfs),
                device=directory.name,
            )
        )
        return lambda: play(outputs, clock, store)
    # Modbus: a TCP server answering with the output due at the moment it is read.
    port = free_port()
    layout = Layout(device.data_type, device.word_order, device.scale)
    held = "0.1 °C" if layout == Layout() else f"{device.data_type} × {device.scale:g}"
    server = ModbusThermometer(
        host="127.0.0.1", port=port, playback=Playback(outputs), clock=clock, layout=layout
    )
    await server.start()
    stack.push_async_callback(_stop_within, server.stop, 5.0)
    found.append(
        Endpoint(
            device.sensor,
            "modbus",
            f"127.0.0.1:{port} device 1 register 0 ({held})",
            port=port,
        )
    )
    end = scenario.start + timedelta(seconds=scenario.duration)

    async def serve() -> None:
        # a polled device needs no task of its own: its register shows the output due when
        # it is read; it serves until the scenario ends
        delay = (end - clock.now()).total_seconds()
        if delay > 0:
            await clock.sleep(delay)

    return serve


async def _stop_within(stop: Callable[[], Awaitable[None]], seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop(), seconds)
