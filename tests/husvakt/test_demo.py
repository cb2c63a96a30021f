"""The demo night end to end, through real MQTT, Modbus TCP and a serial pty."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from casebridge.store.sql import SqliteCaseStore
from husvakt.demo import run_demo

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.e2e

EXPECTED = [
    # (sensor, condition, severity, team, priority, room)
    ("basement-t1", "freezing", "warning", "facilities", "P2", "Basement pipe room"),
    ("boiler-t1", "fire", "critical", "emergency", "P1", "Boiler room"),
]


def summary(cases):
    return [
        (c.sensor, c.condition, c.severity, c.team, c.draft.priority, c.draft.room_name)
        for c in cases
    ]


@pytest.mark.mqtt
@pytest.mark.modbus
@pytest.mark.serial
async def test_the_demo_night_opens_exactly_one_freezing_and_one_fire_case(tmp_path, mosquitto):
    result = await run_demo(
        db=tmp_path / "demo.db", speed=3600, broker=(mosquitto.host, mosquitto.port)
    )
    assert summary(result.cases) == EXPECTED
    # Hundreds of readings crossed the lines, and the fault and the line noise came through
    # as what they are — never as a temperature.
    assert result.readings > 900
    assert result.faults >= 1
    assert result.quarantined >= 1
    store = SqliteCaseStore(result.db)
    freezing, fire = await store.list_cases()
    assert [e.kind for e in await store.timeline(freezing.id)] == ["opened", "alarm_raised"]
    assert [e.kind for e in await store.timeline(fire.id)] == [
        "opened",
        "alarm_raised",
        "alarm_updated",
    ]
    # The freezing episode began with the real descent (about 01:29), not the brief 01:10 dip,
    # and the boiler's with the burner fault at 04:00 (episode ids carry when it began).
    freezing_start = freezing.episode.rsplit(":", 1)[1]
    assert "20260115T0115" <= freezing_start <= "20260115T0145", freezing.episode
    assert fire.episode.rsplit(":", 1)[1].startswith("20260115T04"), fire.episode
    assert freezing.opened_at < fire.opened_at
    await store.aclose()


@pytest.mark.mqtt
@pytest.mark.modbus
@pytest.mark.serial
def test_the_demo_command_runs_on_its_embedded_broker_and_lists_its_cases(tmp_path):
    db = tmp_path / "demo.db"
    command = [sys.executable, "-X", "faulthandler", "-m", "husvakt.cli", "demo"]
    proc = subprocess.Popen(
        [*command, "--db", str(db), "--speed", "3600"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGABRT)  # faulthandler prints every thread's stack
        stdout, stderr = proc.communicate()
        pytest.fail(f"the demo did not finish in 120 s:\n{stdout}\n{stderr[-6000:]}")
    run = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    assert run.returncode == 0, run.stderr
    assert "HV-2026-000001" in run.stdout and "HV-2026-000002" in run.stdout
    assert "2 case(s) in" in run.stdout and str(db) in run.stdout
    listed = subprocess.run(
        [sys.executable, "-m", "husvakt.cli", "cases", "list", "--db", str(db), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    cases = json.loads(listed.stdout)
    assert [(c["sensor"], c["condition"], c["severity"], c["draft"]["team"]) for c in cases] == [
        (s, c, sev, team) for s, c, sev, team, _, _ in EXPECTED
    ]


def test_a_night_that_plays_a_sensor_the_config_lacks_is_refused_with_the_file(tmp_path):
    night = tmp_path / "night.yaml"
    night.write_text(
        "name: attic\nstart: 2026-01-14T22:00:00Z\nduration: 1h\n"
        "devices:\n  - {sensor: attic-t1, protocol: serial, signal: {baseline: 3}}\n"
    )
    demo = [sys.executable, "-m", "husvakt.cli", "demo", "--db", str(tmp_path / "d.db")]
    run = subprocess.run(
        [*demo, "--night", str(night)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 1
    assert "data/demo.yaml: sensors: the night plays 'attic-t1'; add it" in run.stderr
    assert "Traceback" not in run.stderr


@pytest.mark.timeout(300)
def test_the_demo_runs_from_an_installed_wheel(tmp_path):
    """The demo's site and night travel in the package: built as a wheel, installed apart
    from this checkout, `husvakt demo` runs from anywhere and opens its two cases."""
    source = tmp_path / "src"
    archive = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z"], capture_output=True,
                             check=True).stdout.decode().split("\0")  # fmt: skip
    for name in filter(None, archive):
        target = source / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if (ROOT / name).is_file():
            target.write_bytes((ROOT / name).read_bytes())
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "-w", str(wheels), str(source)],
                   check=True, capture_output=True, timeout=240)  # fmt: skip
    (wheel,) = wheels.glob("husvakt-*.whl")
    installed = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--target", str(installed), str(wheel)],
                   check=True, capture_output=True, timeout=240)  # fmt: skip
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(installed)}
    where = subprocess.run([sys.executable, "-c", "import husvakt; print(husvakt.__file__)"],
                           cwd=elsewhere, env=env, capture_output=True, text=True, check=True)  # fmt: skip
    assert where.stdout.startswith(str(installed))  # the wheel's copy, not this checkout
    run = subprocess.run([sys.executable, "-m", "husvakt.cli", "demo", "--json"],
                         cwd=elsewhere, env=env, capture_output=True, text=True, timeout=240,
                         check=False)  # fmt: skip
    assert run.returncode == 0, run.stderr
    cases = json.loads(run.stdout)
    assert sorted(c["condition"] for c in cases) == ["fire", "freezing"]
    assert (elsewhere / "husvakt-demo.db").exists()
