"""`husvakt sim`: a scenario's devices, live, on their real protocols.

MQTT devices publish to a broker, Modbus devices are TCP servers on free loopback ports,
serial devices print on pseudo-terminals and 1-Wire probes are files in a fake sysfs tree —
each following the scenario's signal and faults on an accelerated clock. `husvakt sim` prints
where each device is, so a gateway config can point at them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import tempfile
import tty
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import aiomqtt

from firmware_sim.modbus import ModbusThermometer
from firmware_sim.scenario import Device, Output, Scenario
from gateway.clock import ScaledClock
from husvakt.broker import free_port

__all__ = ["Endpoint", "run_sim"]

W1_OK = (
    "{b0:02x} {b1:02x} 4b 46 7f ff 0e 10 00 : crc=00 YES\n"
    "{b0:02x} {b1:02x} 4b 46 7f ff 0e 10 00 t={milli}\n"
)
W1_RESET = "50 05 4b 46 7f ff 0c 10 1c : crc=1c YES\n50 05 4b 46 7f ff 0c 10 1c t=85000\n"
W1_CRC = "72 01 4b 46 7f ff 0e 10 57 : crc=12 NO\n72 01 4b 46 7f ff 0e 10 57 t=23125\n"


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


def _w1(output: Output) -> str:
    if output.fault == "ds18b20-reset":
        return W1_RESET
    if output.fault is not None:
        return W1_CRC
    assert output.value is not None
    milli = round(output.value * 1000)
    raw = round(output.value * 16) & 0xFFFF
    return W1_OK.format(b0=raw & 0xFF, b1=raw >> 8, milli=milli)


def _text(output: Output) -> str | None:
    if output.fault == "disconnected":
        return "-127.00"
    if output.fault == "ds18b20-reset":
        return "85.00"
    if output.fault == "serial-garbage":
        return "\x00\x7f#@!"
    if output.value is None:
        return None  # protocol-specific faults (Modbus) have no text form
    return f"{output.value:.2f}"


def payload(fmt: str, text: str) -> str:
    """A reading in the shape a real device of that kind publishes."""
    if fmt in ("plain", "esphome") or not _is_number(text):
        return text
    value = float(text)
    shapes: dict[str, object] = {
        "json": {"temperature": value},
        "tasmota": {
            "Time": "1970-01-01T00:00:00",
            "DS18B20": {"Id": "01191E8A3E12", "Temperature": value},
            "TempUnit": "C",
        },
        "zigbee2mqtt": {"battery": 97, "linkquality": 120, "temperature": value},
        "shelly": {"id": 0, "tC": value, "tF": round(value * 9 / 5 + 32, 1)},
    }
    return json.dumps(shapes[fmt])


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


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
            text = _text(output)
            if text is not None:
                await mqtt_client.publish(topic, payload(device.format, text).encode(), qos=1)

        found.append(Endpoint(device.sensor, "mqtt", f"topic {topic}"))
        return asyncio.ensure_future(run(index, publish))
    if device.protocol == "serial":
        master, slave = os.openpty()
        tty.setraw(slave)
        ptys.extend((master, slave))
        os.set_blocking(master, False)

        async def write(output: Output) -> None:
            text = _text(output)
            if text is not None:
                line = text if output.fault == "serial-garbage" else f"{device.sensor} {text}"
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
            (directory / "w1_slave").write_text(_w1(output))

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
