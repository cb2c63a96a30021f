"""The Faust table's layout: a gateway's own part under `site/gateway` and each sensor's state
under `site/gateway/sensor`; a worker reads a track back whole from it, and reads the older
layout (every sensor inline in the gateway's value) too, marking its sensors to be rewritten."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from husvakt.config import load_config
from stream.core import GatewayTrack, encode_sensor, encode_track, on_reading
from stream.faust_engine import FaustEngine
from stream.table import RuleTable
from tests.factories import make_reading
from tests.stream.faust_helpers import write_config

NOW = datetime(2026, 1, 15, 2, 0, tzinfo=UTC)
KEY = b"nordskolan/pi-basement"


def engine(tmp_path):
    # built, not started: no broker is contacted
    config = load_config(write_config(tmp_path, "127.0.0.1:9"))
    faust = FaustEngine(
        rules=config.rules,
        sensors=config.sensor_index(),
        config=config.stream,
        registry=config.registry(),
    )
    return faust, RuleTable(config.rules, config.sensor_index())


def track_with_two_sensors(table):
    track = GatewayTrack("nordskolan", "pi-basement")
    for i in range(4):
        for sensor, value in (("basement-t1", 4.0 + i), ("t2", 21.0)):
            reading = make_reading(
                0,
                value,
                sensor=sensor,
                seq=2 * i + (sensor == "t2") + 1,
                start=NOW + timedelta(seconds=30 * i),
                site="nordskolan",
                gateway="pi-basement",
            )
            on_reading(track, reading, table, reading.ts, late_after=300)
    track.changed.clear()
    return track


def test_a_track_is_read_back_whole_from_its_gateway_and_sensor_keys(tmp_path):
    faust, table = engine(tmp_path)
    track = track_with_two_sensors(table)
    faust.tracks.data[KEY] = encode_track(track, sensors=False)
    for sensor_id, sensor in track.sensors.items():
        faust.tracks.data[KEY + b"/" + sensor_id.encode()] = encode_sensor(sensor, samples=True)
    restored = faust._track(KEY, "nordskolan", "pi-basement", {})
    assert restored == track
    assert len(restored.sensors["basement-t1"].states["heat-rise"].samples) == 4
    assert not restored.changed


def test_the_older_layout_is_read_and_its_sensors_are_marked_to_be_rewritten(tmp_path):
    faust, table = engine(tmp_path)
    track = track_with_two_sensors(table)
    faust.tracks.data[KEY] = encode_track(track)  # every sensor inline, as before
    restored = faust._track(KEY, "nordskolan", "pi-basement", {})
    assert restored == track
    assert restored.changed == {"basement-t1", "t2"}
