"""Time, seq and the registry: no reading can silence a sensor or a gateway, and nothing the
config does not know gets evaluated or gets state."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.config import MqttPoint, SensorConfig
from gateway.models import Reading
from stream.config import DEFAULT_RULES, ThresholdRule
from stream.core import GatewayTrack, decode_track, encode_track, on_reading
from stream.engine import EmbeddedEngine
from stream.registry import Registry
from stream.table import RuleTable

NOW = datetime(2026, 1, 15, 2, 0, tzinfo=UTC)
FROST_AT_ONCE = ThresholdRule(
    id="frost", condition="freezing", below=5, critical=2, clear=7, hold=0
)
TABLE = RuleTable((FROST_AT_ONCE, *DEFAULT_RULES[1:]), {})


def reading(value, *, ts=NOW, seq=1, sensor="t1", gateway="g", kind="temperature"):
    return Reading(
        site="s", gateway=gateway, sensor=sensor, kind=kind, value=value, unit="°C", ts=ts, seq=seq
    )


def apply(track, r, now=NOW, outbox=None):
    return on_reading(track, r, TABLE, now, late_after=300, max_skew=300, outbox=outbox)


def conditions(alarms):
    return [(a.sensor, a.condition, a.state) for a in alarms]


def test_a_reading_dated_far_ahead_is_refused_and_raises_gateway_clock_once():
    track = GatewayTrack("s", "g")
    alarms, outcome = apply(track, reading(20.0, ts=NOW + timedelta(days=365), seq=5))
    assert outcome == "clock_ahead"
    assert conditions(alarms) == [("g", "gateway_clock", "raised")]
    assert track.sensors == {}  # no state from it
    alarms, outcome = apply(track, reading(20.0, ts=NOW + timedelta(hours=1), seq=6))
    assert (alarms, outcome) == ([], "clock_ahead")  # one case, not one per reading
    # the gateway's clock is right again: the case's condition clears, the reading counts
    alarms, outcome = apply(track, reading(1.0, ts=NOW, seq=7))
    assert outcome == "evaluated"
    assert conditions(alarms) == [
        ("g", "gateway_clock", "cleared"),
        ("t1", "freezing", "raised"),
    ]


def test_a_reading_a_little_ahead_counts_as_measured_now_and_moves_no_clock_past_now():
    track = GatewayTrack("s", "g")
    _, outcome = apply(track, reading(20.0, ts=NOW + timedelta(minutes=4), seq=1))
    assert outcome == "evaluated"
    assert track.newest_ts == NOW and track.sensors["t1"].last_ts == NOW
    # a genuine reading a second later is in order
    alarms, outcome = apply(
        track, reading(1.0, ts=NOW + timedelta(seconds=1), seq=2), now=NOW + timedelta(seconds=1)
    )
    assert (outcome, conditions(alarms)) == ("evaluated", [("t1", "freezing", "raised")])


def test_a_wild_seq_heals_with_the_next_genuine_reading():
    track = GatewayTrack("s", "g")
    apply(track, reading(20.0, seq=10))
    apply(track, reading(20.0, ts=NOW + timedelta(seconds=1), seq=900_000_000))  # forged
    later = NOW + timedelta(seconds=2)
    alarms, outcome = apply(track, reading(1.0, ts=later, seq=11), now=later)
    assert outcome == "seq_reset"
    assert conditions(alarms) == [("t1", "freezing", "raised")]


def test_a_seq_beyond_any_real_gap_is_refused():
    track = GatewayTrack("s", "g")
    apply(track, reading(20.0, seq=10))
    _, outcome = apply(track, reading(20.0, ts=NOW, seq=2**62))
    assert outcome == "seq_jump"
    assert track.max_seq == 10


def test_a_new_outbox_restarts_the_numbering_and_a_resent_batch_is_a_duplicate():
    track = GatewayTrack("s", "g")
    apply(track, reading(20.0, seq=500), outbox="ob-1")
    _, outcome = apply(track, reading(20.0, seq=500), outbox="ob-1")
    assert outcome == "duplicate"
    # a new SD card: numbering from 1, even with timestamps no newer than before
    _, outcome = apply(track, reading(20.0, seq=1), outbox="ob-2")
    assert outcome == "seq_reset"
    assert track.outbox == "ob-2" and track.max_seq == 1
    assert decode_track(encode_track(track)).outbox == "ob-2"


# Any sequence of readings, with any timestamps (within the wire's years) and seqs, then a
# genuine 1 °C reading measured now with the gateway's next seq: freezing is raised.
hostile_readings = st.lists(
    st.builds(
        lambda ts, seq, value, sensor: reading(value, ts=ts, seq=seq, sensor=sensor),
        st.datetimes(
            min_value=datetime(2000, 1, 1),  # noqa: DTZ001 - hypothesis takes naive bounds
            max_value=datetime(2199, 1, 1),  # noqa: DTZ001
            timezones=st.just(UTC),
        ),
        st.integers(min_value=0, max_value=2**63 - 1),
        st.floats(min_value=-60, max_value=130),
        st.sampled_from(["t1", "t2"]),
    ),
    max_size=30,
)


@settings(max_examples=300, deadline=None)
@given(hostile_readings, st.integers(min_value=0, max_value=3600))
def test_no_sequence_of_readings_stops_a_later_genuine_alarm(readings, later):
    track = GatewayTrack("s", "g")
    for r in readings:
        apply(track, r)
    # a real frost: two readings 10 s apart (a jump from a wild value is confirmed by the
    # second), measured now, numbered on from wherever the gateway's counter stands
    outcomes = []
    for step in (0, 10):
        now = NOW + timedelta(seconds=later + 1 + step)
        genuine = reading(1.0, ts=now, seq=track.max_seq + 1, sensor="t1")
        _, outcome = apply(track, genuine, now=now)
        outcomes.append(outcome)
    assert set(outcomes) <= {"evaluated", "seq_reset"}, outcomes
    assert track.sensors["t1"].states["frost"].phase == "raised", [
        (r.ts, r.seq, r.value) for r in readings
    ]


SENSORS = {
    ("s", "t1"): SensorConfig(
        id="t1", site="s", gateway="g", source=MqttPoint(type="mqtt", topic="a")
    ),
    ("s", "h1"): SensorConfig(
        id="h1",
        site="s",
        gateway="g",
        kind="humidity",
        unit="%",
        source=MqttPoint(type="mqtt", topic="b"),
    ),
}


def test_the_registry_refuses_what_the_config_does_not_know_and_counts_it_per_gateway():
    registry = Registry(SENSORS)
    assert registry.refuse(reading(1.0)) is None
    assert registry.refuse(reading(1.0, sensor="ghost")) == "unknown-sensor"
    assert registry.refuse(reading(1.0, gateway="other")) == "unknown-gateway"
    assert registry.refuse(reading(1.0, kind="humidity")) == "wrong-kind"
    assert registry.refuse(reading(1.0).model_copy(update={"site": "x"})) == "unknown-site"
    assert registry.refuse_gateway("s", "g") is None
    # a sensor of gateway g read by g2, a gateway the config knows for another sensor; and a
    # sensor of a site whose gateway the config does not name: read by any of that site's
    owned = {
        **SENSORS,
        ("s", "t2"): SENSORS[("s", "t1")].model_copy(update={"id": "t2", "gateway": "g2"}),
        ("o", "t1"): SENSORS[("s", "t1")].model_copy(update={"site": "o", "gateway": None}),
    }
    registry = Registry(owned)
    assert registry.refuse(reading(1.0, gateway="g2")) == "wrong-gateway"
    assert registry.refuse(reading(1.0, sensor="t2", gateway="g2")) is None
    anywhere = reading(1.0, gateway="any").model_copy(update={"site": "o"})
    assert registry.refuse(anywhere) is None
    assert registry.refuse(anywhere.model_copy(update={"kind": "humidity"})) == "wrong-kind"


async def test_two_hundred_ghost_sensors_open_no_case_and_get_no_state():
    got = []

    async def sink(alarms):
        got.extend(alarms)

    class Clock:
        def now(self):
            return NOW + timedelta(hours=2)

    engine = EmbeddedEngine(
        table=RuleTable(DEFAULT_RULES, SENSORS),
        clock=Clock(),
        sink=sink,
        watch_gateways=True,
        registry=Registry(SENSORS),
    )
    ghosts = [reading(1.0, sensor=f"ghost-{i}", seq=i + 1) for i in range(200)]
    await engine.process_batch(ghosts)
    await engine.tick()  # no offline cases for them either
    assert got == []
    assert engine.quarantine.counts == {"unknown-sensor": 200}
    # one entry per unknown id, so an admin sees what to add
    assert {e.source for e in engine.quarantine.entries()} == {f"s/g/ghost-{i}" for i in range(200)}
    assert engine.counts["refused"] == 200 and engine.counts["readings"] == 0


def test_a_sensor_saved_ahead_of_its_gateway_does_not_apply_a_reading_twice():
    # The Faust table writes each sensor's state before its gateway's part; a worker that dies
    # in between leaves the sensor ahead. Re-evaluating the message from there must change
    # the sensor's state no further (no second sample, no second fault count).
    from stream.core import decode_sensor, encode_sensor, sensor_ids

    track = GatewayTrack("s", "g")
    first = [reading(20.0 + i, ts=NOW + timedelta(seconds=10 * i), seq=i + 1) for i in range(3)]
    for r in first:
        apply(track, r, now=first[-1].ts)
    saved_gateway = encode_track(track, sensors=False)
    assert sensor_ids(saved_gateway) == ["t1"]
    message = [reading(24.0, ts=NOW + timedelta(seconds=30), seq=4)]
    for r in message:
        apply(track, r, now=message[-1].ts)
    sensor_ahead = encode_sensor(track.sensors["t1"], samples=True)

    restored = decode_track(saved_gateway)
    restored.sensors["t1"] = decode_sensor(sensor_ahead)
    before = decode_sensor(sensor_ahead)
    outcomes = [apply(restored, r, now=message[-1].ts)[1] for r in message]
    assert outcomes == ["duplicate"]
    assert restored.sensors["t1"] == before
    assert len(restored.sensors["t1"].states["heat-rise"].samples) == 4


def test_a_sensor_whose_readings_change_kind_is_ruled_by_the_rows_of_the_new_kind():
    """The rules a sensor is ruled by are looked up once and kept with it, for the kind of
    reading they were looked up for: a sensor that reports another kind (a reflashed device,
    an integrator's config) is ruled by that kind's rows at once — humidity at 80 % raises
    damp, not fire — and by a new table's rows when the table is replaced."""
    from stream.config import parse_rule

    damp = parse_rule(
        {"id": "damp", "condition": "damp", "kind": "humidity", "above": 75, "clear": 70}
    )
    table = RuleTable((damp, *DEFAULT_RULES), {})
    track = GatewayTrack("s", "g")
    hot = on_reading(track, reading(80.0, seq=1), table, NOW, late_after=300)[0]
    assert ("t1", "fire", "raised") in conditions(hot)
    humid = reading(80.0, seq=2, ts=NOW + timedelta(seconds=10), kind="humidity")
    alarms = on_reading(track, humid, table, NOW + timedelta(seconds=10), late_after=300)[0]
    assert ("t1", "damp", "raised") in conditions(alarms)
    assert ("t1", "fire", "updated") not in conditions(alarms)
    # the same kind on a new table: that table's rows
    muggy = {"id": "muggy", "condition": "muggy", "kind": "humidity", "above": 60, "clear": 55}
    later = reading(78.0, seq=3, ts=NOW + timedelta(seconds=20), kind="humidity")
    new = RuleTable((parse_rule(muggy), *DEFAULT_RULES), {})
    alarms = on_reading(track, later, new, NOW + timedelta(seconds=20), late_after=300)[0]
    assert ("t1", "muggy", "raised") in conditions(alarms)
