"""The scenario library, replayed the way an integrator would, plus record → replay."""

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import aiomqtt
import pytest

from gateway.wire import encode_reading
from husvakt.config import load_config
from husvakt.pytest_plugin import assert_cases
from husvakt.replay import compare, load_expectations, replay_path

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ROOT / "config" / "scenarios"
SCHOOL = SCENARIOS / "school.yaml"
LIBRARY = sorted(
    p for p in SCENARIOS.glob("*.yaml") if p.name != "school.yaml" and ".expect" not in p.name
)


def test_the_library_has_the_scenarios_integrators_need():
    names = {p.stem for p in LIBRARY}
    assert {
        "freezing-night",
        "boiler-fire",
        "flapping-sensor",
        "ds18b20-faults",
        "gateway-offline-backlog",
        "dead-modbus-device",
        "site-power-cut",
    } <= names
    for scenario in LIBRARY:
        assert scenario.with_suffix(".expect.yaml").exists(), f"{scenario.name} has no expectations"


@pytest.mark.parametrize("scenario", LIBRARY, ids=lambda p: p.stem)
async def test_every_scenario_in_the_library_meets_its_expectations(scenario):
    result = await replay_path(scenario, load_config(SCHOOL))
    assert compare(result, load_expectations(scenario.with_suffix(".expect.yaml"))) == []


async def test_the_plugin_fixture_and_assertion_helper(husvakt_replay):
    result = await husvakt_replay(SCENARIOS / "gateway-offline-backlog.yaml", config=SCHOOL)
    assert_cases(
        result,
        [
            {"sensor": "pi-basement", "condition": "gateway_offline"},
            {"sensor": "basement-t1", "condition": "freezing", "late": True},
        ],
        late_alarms=1,
    )
    with pytest.raises(AssertionError) as caught:
        assert_cases(
            result,
            [
                {"sensor": "pi-basement", "condition": "gateway_offline"},
                {"sensor": "basement-t1", "condition": "freezing", "late": False},
                {"sensor": "boiler-t1", "condition": "fire"},
            ],
        )
    message = str(caught.value)
    assert "- missing case: sensor=basement-t1, condition=freezing, late=False (got: " in message
    assert "- missing case: sensor=boiler-t1, condition=fire" in message
    assert "+ unexpected case: sensor=basement-t1, condition=freezing" in message


def husvakt(*args):
    return subprocess.run(
        [sys.executable, "-m", "husvakt.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_replaying_twice_gives_byte_identical_output():
    runs = [
        husvakt("replay", str(SCENARIOS / "freezing-night.yaml"), "--config", str(SCHOOL), "--json")
        for _ in range(2)
    ]
    assert runs[0].returncode == 0, runs[0].stderr
    assert runs[0].stdout == runs[1].stdout
    assert json.loads(runs[0].stdout)["cases"][0]["id"] == "HV-2026-000001"


def test_a_mismatch_exits_1_with_a_readable_diff(tmp_path):
    expect = tmp_path / "wrong.expect.yaml"
    expect.write_text(
        "cases:\n  - {sensor: basement-t1, condition: freezing, severity: critical}\nnotifications: 7\n"
    )
    out = husvakt(
        "replay",
        str(SCENARIOS / "freezing-night.yaml"),
        "--config",
        str(SCHOOL),
        "--expect",
        str(expect),
    )
    assert out.returncode == 1
    assert (
        "- missing case: sensor=basement-t1, condition=freezing, severity=critical (got: "
        in out.stderr
    )
    assert "notifications: expected 7, got 2" in out.stderr


def test_a_broken_scenario_points_at_its_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        (SCENARIOS / "boiler-fire.yaml")
        .read_text()
        .replace("rate: 12, per: 1m", "rate: 12, per: soon")
    )
    out = husvakt("replay", str(bad), "--config", str(SCHOOL))
    assert out.returncode == 1
    assert (
        f"{bad}:" in out.stderr
        and "timeline[0].ramp.per" in out.stderr
        and "not a duration" in out.stderr
    )


@pytest.mark.mqtt
async def test_record_then_replay_a_real_night(tmp_path, mosquitto):
    from husvakt.record import record
    from tests.factories import make_reading

    trace = tmp_path / "night.jsonl"
    stop = asyncio.Event()
    task = asyncio.create_task(
        record(
            host=mosquitto.host,
            port=mosquitto.port,
            topic="husvakt/v1/+/+/readings",
            out=trace,
            stop=stop,
            count=30,
        )
    )
    batch = []
    for minute in range(30):
        r = make_reading(minute, 6.0 - minute * 0.1, sensor="basement-t1", seq=minute + 1)
        batch.append(
            json.loads(
                encode_reading(
                    r.model_copy(update={"site": "nordskolan", "gateway": "pi-basement"})
                )
            )
        )
    async with aiomqtt.Client(mosquitto.host, mosquitto.port) as uplink:
        while not task.done():
            await uplink.publish("husvakt/v1/nordskolan/pi-basement/readings", b"not json", qos=1)
            await uplink.publish(
                "husvakt/v1/nordskolan/pi-basement/readings", json.dumps(batch[:10]), qos=1
            )
            await uplink.publish(
                "husvakt/v1/nordskolan/pi-basement/readings", json.dumps(batch[10:]), qos=1
            )
            await asyncio.sleep(0.2)  # the subscription may not be in place yet
    assert await task >= 30
    result = await replay_path(trace, load_config(SCHOOL))
    assert_cases(
        result, [{"sensor": "basement-t1", "condition": "freezing", "severity": "warning"}]
    )


@pytest.mark.parametrize("name", ["site-power-cut", "gateway-offline-backlog", "ds18b20-faults"])
async def test_deliveries_and_escalations_asked_for_only_when_due_change_nothing(name, monkeypatch):
    """The replay asks the store for due deliveries and escalations only in minutes when one
    falls due: the same timelines, escalations and notifications as asking every minute."""
    from husvakt import replay as module

    scenario = SCENARIOS / f"{name}.yaml"
    quick = await replay_path(scenario, load_config(SCHOOL))

    async def every_minute(self, now):
        await self._escalator.run_due(now)
        await self._notifier.run_due(now)

    monkeypatch.setattr(module._Due, "run", every_minute)
    slow = await replay_path(scenario, load_config(SCHOOL))
    assert any(e.kind == "escalated" for tl in quick.timelines.values() for e in tl)
    assert quick.notifications
    assert quick.model_dump() == slow.model_dump()


async def test_a_scenario_simulated_in_a_worker_process_replays_the_same():
    """A long scenario's devices run in a worker process: the replay is the same to the bit
    as one in a single process — and a worker that fails says why in the replay."""
    from collections import Counter

    from husvakt.replay import (
        arrivals_from_scenario,
        arrivals_in_worker,
        load_scenario_file,
        replay,
        scenario_end,
    )

    config = load_config(SCHOOL)
    scenario = load_scenario_file(SCENARIOS / "gateway-offline-backlog.yaml")

    async def run(arrivals):
        counts = Counter()
        return await replay(
            name=scenario.name, config=config, arrivals=arrivals(scenario, config, counts),
            counts=counts, until=scenario_end(scenario),
            watched={d.sensor for d in scenario.devices},
        )  # fmt: skip

    alone, split = await run(arrivals_from_scenario), await run(arrivals_in_worker)
    assert split.cases and split.counts.get("good")
    assert split.model_dump() == alone.model_dump()
    no_gateway = config.model_copy(update={"gateway": None})
    with pytest.raises(RuntimeError, match=r"device simulation failed:(?s:.)*AssertionError"):
        list(arrivals_in_worker(scenario, no_gateway, Counter()))


async def test_replay_path_simulates_a_long_scenario_in_a_worker(monkeypatch):
    """`husvakt replay` hands a scenario of many outputs to the worker (here: any scenario) on
    a machine with a core to spare."""
    from husvakt import replay as module

    scenario = SCENARIOS / "freezing-night.yaml"
    alone = await replay_path(scenario, load_config(SCHOOL))
    started = []
    in_worker = module.arrivals_in_worker

    def spy(*args):
        started.append(True)
        return in_worker(*args)

    monkeypatch.setattr(module, "WORKER_FROM", 0)
    monkeypatch.setattr(module.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(module, "arrivals_in_worker", spy)
    split = await replay_path(scenario, load_config(SCHOOL))
    assert started
    assert split.model_dump() == alone.model_dump()


def test_a_replayed_mqtt_device_decodes_as_the_gateways_codec_does():
    """The replay encodes and decodes each distinct printed value of a device shape once; for
    every shape, key, on/off device and fault that is what encoding the output and decoding
    it with the codec of a gateway configured for that very device gives, reading by reading."""
    from datetime import UTC, datetime

    from firmware_sim import encode
    from firmware_sim.scenario import Output
    from gateway.config import MqttPoint, SensorConfig
    from gateway.decode import MQTT_PRESETS
    from gateway.normalize import Sample
    from gateway.protocols import Decoded
    from husvakt.replay import _mqtt_codec, _raw

    at = datetime(2026, 1, 15, 2, 0, tzinfo=UTC)
    checked = 0
    for fmt in MQTT_PRESETS:
        for path in (None, "temperature", "a.b"):
            for state in (False, True):
                for value, fault in ((21.456, None), (0.0, None), (1.0, None), (-127.0, None),
                                     (None, "ds18b20-crc"), (None, "serial-garbage"),
                                     (None, "disconnected"), (None, "dropout")):  # fmt: skip
                    out = Output(at, 0.0, 0, "dev/t1", "mqtt", value, fault, fmt, path, state)
                    sensor = SensorConfig(
                        id="t1", source=MqttPoint(type="mqtt", topic="dev/t1", format=fmt)
                    )
                    message = encode.mqtt_message(out, encode.shown(out))
                    codec = _mqtt_codec(out.sensor, sensor.id, fmt, path)
                    if message is None:
                        expected = None
                    else:
                        decoded = codec.decode(out.sensor, message.encode())
                        expected = Sample.of(decoded, at) if isinstance(decoded, Decoded) else None
                    assert _raw(out, sensor) == expected, (fmt, path, state, value, fault)
                    checked += expected is not None
    assert checked > 50
