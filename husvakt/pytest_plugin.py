"""pytest plugin for integrators: replay a night of data in a test and assert the cases.

Installed with husvakt (entry point `pytest11`), so the fixtures are just there:

    from husvakt.pytest_plugin import assert_cases

    async def test_a_freezing_night_opens_one_case(husvakt_replay):
        result = await husvakt_replay("scenarios/freezing-night.yaml", config="site.yaml")
        assert_cases(result, [{"sensor": "basement-t1", "condition": "freezing"}])

Fixtures:
- `husvakt_replay(source, config=...)` — replay a scenario (YAML) or a recorded trace
  (`.jsonl`) through the real rules and case bridge; returns a `ReplayResult` (cases,
  timelines, alarms, notifications).
- `husvakt_devices` — simulated devices on real protocols, each playing a scenario's device
  (`Scenario.single(...)` makes one), stopped after the test: `.modbus(scenario, clock)` →
  (host, port), `.serial(scenario, clock)` → pty path, `.mqtt(host, port, topic, scenario,
  clock)` → a running publisher.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from firmware_sim.modbus import Layout, ModbusThermometer
from firmware_sim.mqtt import MqttThermometer
from firmware_sim.play import Clock, Playback
from firmware_sim.scenario import Scenario
from firmware_sim.serial import SerialThermometer
from husvakt.broker import free_port
from husvakt.config import load_config
from husvakt.replay import Expectations, ReplayResult, compare, replay_path

__all__ = ["SimulatedDevices", "assert_cases"]


def assert_cases(
    result: ReplayResult, expected: Sequence[Mapping[str, Any]], **counts: int
) -> None:
    """Fail with a readable diff unless the replay opened exactly these cases (each a mapping
    of sensor, condition and optionally severity, team, late). `counts` may add
    `notifications=`, `late_alarms=`, `escalations=`."""
    wanted = Expectations.model_validate({"cases": list(expected), **counts})
    problems = compare(result, wanted)
    if problems:
        raise AssertionError("replay does not match:\n" + "\n".join(problems))


@pytest.fixture
def husvakt_replay() -> Callable[..., Awaitable[ReplayResult]]:
    async def run(source: str | Path, *, config: str | Path) -> ReplayResult:
        return await replay_path(Path(source), load_config(Path(config)))

    return run


class SimulatedDevices:
    """Starts simulated devices and stops them all at the end of the test."""

    def __init__(self) -> None:
        self._stops: list[Callable[[], Awaitable[None]]] = []
        self._tasks: list[asyncio.Task[None]] = []

    async def modbus(
        self,
        scenario: Scenario,
        clock: Clock,
        *,
        device: int = 0,
        device_id: int = 1,
        address: int = 0,
    ) -> tuple[str, int]:
        """A Modbus TCP PLC showing the scenario's `device` (its index) from register
        `address`, as the device's layout says (a thermometer: int16 in tenths of a °C)."""
        dev = scenario.devices[device]
        port = free_port()
        plc = ModbusThermometer(
            host="127.0.0.1",
            port=port,
            playback=Playback(scenario.device_outputs(device)),
            clock=clock,
            device_id=device_id,
            address=address,
            layout=Layout(dev.data_type, dev.word_order, dev.scale),
        )
        await plc.start()
        self._stops.append(plc.stop)
        return "127.0.0.1", port

    def serial(self, scenario: Scenario, clock: Clock, *, device: int = 0) -> str:
        """A serial line printing the scenario's `device` as `SENSOR VALUE` lines; its path."""
        name = scenario.devices[device].sensor
        line = SerialThermometer(name=name, outputs=scenario.device_outputs(device), clock=clock)
        self._tasks.append(asyncio.create_task(line.run(), name=f"sim serial {name}"))

        async def stop() -> None:
            line.close()

        self._stops.append(stop)
        return line.path

    def mqtt(
        self,
        host: str,
        port: int,
        topic: str,
        scenario: Scenario,
        clock: Clock,
        *,
        device: int = 0,
    ) -> MqttThermometer:
        """A thermometer publishing the scenario's `device` to `topic` in its payload shape."""
        thermometer = MqttThermometer(
            host=host,
            port=port,
            topic=topic,
            outputs=scenario.device_outputs(device),
            clock=clock,
            client_id=f"sim-{topic.replace('/', '-')}",
        )
        self._tasks.append(asyncio.create_task(thermometer.run(), name=f"sim mqtt {topic}"))
        return thermometer

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for stop in reversed(self._stops):
            await stop()


@pytest.fixture
async def husvakt_devices() -> AsyncIterator[SimulatedDevices]:
    devices = SimulatedDevices()
    try:
        yield devices
    finally:
        await devices.aclose()
