"""`husvakt run` on the real clock: a boiler controller over Modbus TCP reports 60 °C."""

import asyncio
import signal
import subprocess
import sys
from datetime import UTC, datetime

import pytest

from casebridge.store.sql import SqliteCaseStore
from firmware_sim.modbus import ModbusThermometer
from firmware_sim.play import Playback
from firmware_sim.scenario import Scenario
from gateway.clock import SystemClock
from husvakt.broker import free_port

CONFIG = """
sites: [{{id: skolan, name: Skolan, buildings: [{{id: a, rooms: [{{id: boiler, name: Boiler room}}]}}]}}]
gateway:
  id: pi
  site: skolan
  modbus_devices: {{plc: {{host: 127.0.0.1, port: {port}, poll_interval: 0.1s, timeout: 0.5s}}}}
  outbox: {{path: {tmp}/outbox.db}}
sensors:
  - {{id: boiler-t1, building: a, room: boiler, scale: 0.1, source: {{type: modbus, device: plc, address: 0}}}}
teams: [{{id: larm, name: Alarm centre}}]
routing: [{{id: all, team: larm, priority: P1}}]
cases: {{sqlite: {tmp}/cases.db}}
"""


async def open_cases(db):
    store = SqliteCaseStore(db)
    await store.start()
    try:
        return await store.list_cases()
    finally:
        await store.aclose()


@pytest.mark.e2e
@pytest.mark.modbus
async def test_husvakt_run_opens_one_case_and_stops_cleanly(tmp_path):
    port = free_port()
    device = ModbusThermometer(
        host="127.0.0.1",
        port=port,
        clock=SystemClock(),
        playback=Playback(
            Scenario.single(
                "boiler", start=datetime.now(UTC), signal={"baseline": 60.0}, every=1.0
            ).device_outputs(0)
        ),
    )
    await device.start()
    config = tmp_path / "site.yaml"
    config.write_text(CONFIG.format(port=port, tmp=tmp_path))
    cli = [sys.executable, "-m", "husvakt.cli"]
    run = subprocess.Popen([*cli, "run", "--config", str(config)], stderr=subprocess.PIPE)
    try:
        for _ in range(200):  # another process writes the store: poll it, up to 20 s
            if (tmp_path / "cases.db").exists() and await open_cases(tmp_path / "cases.db"):
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)  # many more readings above 50 °C…
        run.send_signal(signal.SIGTERM)
        _, err = await asyncio.to_thread(run.communicate, timeout=30)
        assert run.returncode == 0, err.decode()
    finally:
        if run.poll() is None:
            run.kill()
        await device.stop()
    cases = [c.model_dump(mode="json") for c in await open_cases(tmp_path / "cases.db")]
    assert [(c["sensor"], c["condition"], c["severity"], c["draft"]["team"]) for c in cases] == [
        ("boiler-t1", "fire", "critical", "larm")  # …and still exactly one case
    ]
    assert cases[0]["draft"]["room_name"] == "Boiler room"
