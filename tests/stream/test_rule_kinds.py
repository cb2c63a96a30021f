"""Every rule kind, table-driven: what alarms a sequence of readings (and ticks) gives."""

from datetime import UTC, datetime, timedelta

import pytest

from stream.config import (
    DEFAULT_RULES,
    FaultRule,
    GatewayOfflineRule,
    OfflineRule,
    RiseRule,
    ThresholdRule,
)
from stream.core import GatewayTrack, on_reading, on_status, on_tick, watch
from stream.rules import evaluate_sensor, initial_state, rise_rate, tick
from stream.table import RuleTable
from tests.factories import make_reading

T0 = datetime(2026, 1, 15, 0, 0, tzinfo=UTC)
FREEZING = ThresholdRule(
    id="freezing", condition="freezing", below=5, critical=2, clear=7, hold=0, flap_count=4
)
RISE = RiseRule(id="rise", condition="heat_rise", rate=8.3, critical_rate=20, window=120)
OFFLINE = OfflineRule(id="offline", condition="sensor_offline", after=900)
FAULT = FaultRule(id="fault", condition="sensor_fault", faults=3, stuck=6 * 3600, jump=30)


def at(seconds):
    return T0 + timedelta(seconds=seconds)


def run(rules, samples):
    """Feed (second, value[, fault]) samples through `rules`; return
    [(second, condition, state, severity)] of every alarm."""
    states, out = {}, []
    for i, (second, value, *fault) in enumerate(samples):
        r = make_reading(second / 60, value, fault=fault[0] if fault else None, seq=i, start=T0)
        states, alarms = evaluate_sensor(states, r, rules, r.ts)
        out += [((a.ts - T0).total_seconds(), a.condition, a.state, a.severity) for a in alarms]
    return out


@pytest.mark.parametrize(
    ("name", "samples", "expected"),
    [
        (
            "10 °C a minute, read every 10 s, raises once the samples span 30 s",
            [(t, 20 + t / 6) for t in range(0, 200, 10)],
            [(30, "heat_rise", "raised", "warning")],
        ),
        (
            "a burst of lines delivered at once after a stall is not a rise",
            [(0, 20), (1, 21), (2, 22.5), (3, 23)],
            [],
        ),
        (
            "a steady room never raises",
            [(t, 21 + (0.05 if t % 20 else 0)) for t in range(0, 600, 10)],
            [],
        ),
        (
            "a fast climb escalates to critical, and clears when the climb stops",
            [(0, 20), (10, 21), (20, 22), (30, 26), (40, 32), (50, 40), (60, 48)]
            + [(t, 48) for t in range(70, 300, 10)],
            [
                (30, "heat_rise", "raised", "warning"),
                (50, "heat_rise", "updated", "critical"),
                # flat from 60 s: the climb leaves the 2-minute window and the slope drops
                (170, "heat_rise", "cleared", "critical"),
            ],
        ),
        (
            "two samples are not enough for a rate",
            [(0, 20), (10, 40)],
            [],
        ),
    ],
)
def test_rate_of_rise(name, samples, expected):
    assert run([RISE], samples) == expected, name


def test_rise_rate_is_the_least_squares_slope_per_minute():
    assert rise_rate([(at(0), 20.0), (at(60), 30.0), (at(120), 40.0)]) == pytest.approx(10.0)
    assert rise_rate([(at(0), 20.0), (at(0), 21.0)]) is None


@pytest.mark.parametrize(
    ("name", "samples", "expected"),
    [
        (
            "three fault readings in a row raise sensor_fault; three good ones clear it",
            [
                (0, 21),
                (60, 85, "ds18b20-power-on-reset"),
                (120, 0, "crc"),
                (180, 0, "crc"),
                (240, 21),
                (300, 21.1),
                (360, 21.2),
            ],
            [
                (180, "sensor_fault", "raised", "warning"),
                (360, "sensor_fault", "cleared", "warning"),
            ],
        ),
        (
            "two fault readings are a glitch",
            [(0, 21), (60, 0, "crc"), (120, 0, "crc"), (180, 21)],
            [],
        ),
        (
            # the reading after the spike, back near 21, shows the 95 was not real
            "an impossible jump raises sensor_fault, never fire",
            [(0, 21), (10, 21.1), (20, 95.0), (30, 21.2), (40, 21.1), (50, 21.0)],
            [(30, "sensor_fault", "raised", "warning"), (50, "sensor_fault", "cleared", "warning")],
        ),
        (
            "a jump that the next reading confirms is a real fire, one reading late at most",
            [(0, 20), (5, 20.1), (10, 58.0), (15, 59.0), (20, 60.0), (25, 61.0)],
            [(15, "fire", "raised", "critical")],
        ),
        (
            "a sensor that jumps at every reading is a fault, never fire",
            [(0, 20), (5, 90.0), (10, 20.0), (15, 95.0), (20, 10.0), (25, 99.0)],
            [(10, "sensor_fault", "raised", "warning")],
        ),
        (
            "a jump spread over longer than jump_within is a real change",
            [(0, 21), (120, 60)],
            [(120, "fire", "raised", "critical")],
        ),
        (
            "a value stuck for 6 h is a fault",
            [(h * 600, 21.0) for h in range(40)],
            [(21600, "sensor_fault", "raised", "warning")],
        ),
    ],
)
def test_sensor_faults(name, samples, expected):
    fire = ThresholdRule(id="fire", condition="fire", above=50, critical=57, clear=45)
    assert run([fire, FREEZING, FAULT], samples) == expected, name


def test_fault_readings_are_never_a_temperature():
    samples = [(t * 60, 85.0, "ds18b20-power-on-reset") for t in range(10)]
    samples += [(600 + t * 60, -127.0, "disconnected") for t in range(10)]
    got = run(list(RuleTable(DEFAULT_RULES, {}).rules_for("s", "t1", "temperature")), samples)
    assert {g[1] for g in got} == {"sensor_fault"}


@pytest.mark.parametrize(
    ("name", "samples", "expected"),
    [
        (
            "the 4th raise/clear change within the window keeps the alarm raised",
            [(0, 4), (600, 8), (1200, 4), (1800, 8)],
            [
                (0, "raised"),
                (600, "cleared"),
                (1200, "raised"),
                (1800, "updated"),
            ],
        ),
        (
            "a flapping alarm clears once the value has stayed past clear for 30 min",
            [(0, 4), (600, 8), (1200, 4), (1800, 8), (2400, 8), (3000, 6), (3600, 8), (5400, 8)],
            [
                (0, "raised"),
                (600, "cleared"),
                (1200, "raised"),
                (1800, "updated"),
                (5400, "cleared"),
            ],
        ),
        (
            "slow changes are not flapping",
            [(0, 4), (3700, 8), (7400, 4), (11100, 8)],
            [(0, "raised"), (3700, "cleared"), (7400, "raised"), (11100, "cleared")],
        ),
    ],
)
def test_flapping(name, samples, expected):
    got = [(g[0], g[2]) for g in run([FREEZING], samples)]
    assert got == expected, name


def test_a_flapping_alarm_says_so():
    states, alarms = {}, []
    for i, (second, value) in enumerate([(0, 4), (600, 8), (1200, 4), (1800, 8)]):
        r = make_reading(second / 60, value, seq=i, start=T0)
        states, out = evaluate_sensor(states, r, [FREEZING], r.ts)
        alarms += out
    assert alarms[-1].flapping
    assert "flapping: 4 raise/clear changes within 60 min" in (alarms[-1].reason or "")


def test_offline_raises_after_the_silence_and_clears_on_the_next_good_reading():
    state = initial_state(OFFLINE)
    states, _ = evaluate_sensor({}, make_reading(0, 21, start=T0), [OFFLINE], T0)
    state = states["offline"]
    state, alarms = tick(state, OFFLINE, at(900), site="s", sensor="t1")
    assert alarms == []
    state, alarms = tick(state, OFFLINE, at(901), site="s", sensor="t1")
    assert [(a.condition, a.state, a.started_at) for a in alarms] == [
        ("sensor_offline", "raised", T0)
    ]
    state, again = tick(state, OFFLINE, at(2000), site="s", sensor="t1")
    assert again == []
    states, alarms = evaluate_sensor(
        {"offline": state}, make_reading(40, 21, start=T0), [OFFLINE], at(2400)
    )
    assert [a.state for a in alarms] == ["cleared"]


def test_an_offline_alarm_is_held_back_while_held():
    states, _ = evaluate_sensor({}, make_reading(0, 21, start=T0), [OFFLINE], T0)
    _, alarms = tick(states["offline"], OFFLINE, at(3600), site="s", sensor="t1", held=True)
    assert alarms == []
    _, alarms = tick(
        states["offline"], OFFLINE, at(3600), site="s", sensor="t1", grace_from=at(3000)
    )
    assert alarms == []  # the gateway came back 10 min ago; its backlog may still be coming


# --- the gateway level: dedup, order, gateway offline ------------------------------------------

TABLE = RuleTable(
    (
        *DEFAULT_RULES[:2],
        OFFLINE,
        FAULT,
        GatewayOfflineRule(id="gw", condition="gateway_offline", after=600),
    ),
    {},
)


def feed(track, readings, now=None):
    alarms, outcomes = [], []
    for r in readings:
        got, outcome = on_reading(track, r, TABLE, now or r.ts, late_after=300)
        alarms += got
        outcomes.append(outcome)
    return alarms, outcomes


def test_duplicates_by_seq_are_ignored_and_a_renumbered_gateway_is_recognised():
    track = GatewayTrack(site="s", gateway="g")
    first = [make_reading(m, 21, seq=m + 1, start=T0) for m in range(5)]
    _, outcomes = feed(track, first + first[2:])
    assert outcomes == ["evaluated"] * 5 + ["duplicate"] * 3
    _, outcomes = feed(track, [make_reading(10, 21, seq=1, start=T0)])
    assert outcomes == ["seq_reset"]


def test_out_of_order_readings_per_sensor_are_ignored():
    track = GatewayTrack(site="s", gateway="g")
    _, outcomes = feed(
        track,
        [
            make_reading(5, 21, seq=1, start=T0),
            make_reading(4, 3, seq=2, start=T0),
            make_reading(4, 3, seq=3, sensor="t2", start=T0),
        ],
    )
    assert outcomes == ["evaluated", "out_of_order", "evaluated"]


def test_gateway_offline_by_silence_holds_back_sensor_offline_and_clears_on_contact():
    track = GatewayTrack(site="s", gateway="g")
    watch(track, "t1", "temperature", TABLE, T0)
    feed(track, [make_reading(0, 21, seq=1, start=T0)])
    assert on_tick(track, TABLE, at(600)) == []
    raised = on_tick(track, TABLE, at(660))
    assert [(a.condition, a.sensor, a.state) for a in raised] == [
        ("gateway_offline", "g", "raised")
    ]
    assert on_tick(track, TABLE, at(7200)) == []  # no sensor_offline while the gateway is out
    alarms, _ = feed(track, [make_reading(119, 21, seq=2, start=T0)], now=at(7200))
    assert [(a.condition, a.state) for a in alarms] == [("gateway_offline", "cleared")]


def test_the_last_will_raises_gateway_offline_at_once():
    track = GatewayTrack(site="s", gateway="g")
    feed(track, [make_reading(0, 21, seq=1, start=T0)])
    alarms = on_status(track, False, at(30), TABLE, at(31))
    assert [(a.condition, a.state, a.started_at) for a in alarms] == [
        ("gateway_offline", "raised", at(31))
    ]
    assert on_status(track, False, at(30), TABLE, at(40)) == []  # the retained copy again
    alarms = on_status(track, True, at(50), TABLE, at(50))
    assert [a.state for a in alarms] == ["cleared"]


def test_a_sensor_fault_holds_back_its_offline_alarm():
    track = GatewayTrack(site="s", gateway="g")
    faults = [make_reading(m, 0, fault="modbus-timeout", seq=m + 1, start=T0) for m in range(30)]
    alarms, _ = feed(track, faults)
    alarms += on_tick(track, TABLE, at(1900))
    assert [(a.condition, a.state) for a in alarms] == [("sensor_fault", "raised")]


def test_a_row_with_when_raises_only_while_its_other_sensor_is_past_its_level():
    """A door open for 30 minutes is a case while it freezes outside: not while it is mild,
    from when it starts freezing (held 30 minutes from then), and it stays raised until the
    door closes even if it gets milder meanwhile. Nothing known of outside: it raises."""
    from stream.config import parse_rule

    row = parse_rule({"id": "door", "condition": "door_open", "kind": "contact", "state": "off",
                      "hold": "30m", "when": {"sensor": "out", "below": 0}})  # fmt: skip
    assert str(row.when) == "out at or below 0"

    def play(events):
        """(minute, sensor, value) in time order → [(minute, state)] of door_open alarms."""
        table = RuleTable([row, *DEFAULT_RULES], {})
        gw, out = GatewayTrack(site="s", gateway="g"), []
        for seq, (minute, sensor, value) in enumerate(events, 1):
            kind, unit = ("contact", "bool") if sensor == "door" else ("temperature", "°C")
            r = make_reading(minute, value, sensor=sensor, seq=seq, site="s", start=T0)
            r = r.model_copy(update={"kind": kind, "unit": unit})
            alarms, _ = on_reading(gw, r, table, r.ts, late_after=300)
            out += [(minute, a.state) for a in alarms if a.condition == "door_open"]
        return out

    mild_then_frost = [(0, "out", 3.0), (1, "door", 0.0), (20, "door", 0.0), (40, "door", 0.0),
                       (60, "out", -1.0), (61, "door", 0.0), (80, "door", 0.0),
                       (95, "door", 0.0), (100, "out", 4.0), (120, "door", 0.0),
                       (130, "door", 1.0)]  # fmt: skip
    assert play(mild_then_frost) == [(95, "raised"), (130, "cleared")]
    mild = [(0, "out", 3.0), (1, "door", 0.0), (40, "door", 0.0), (90, "door", 0.0)]
    assert play(mild) == []
    unknown = [(1, "door", 0.0), (40, "door", 0.0)]
    assert play(unknown) == [(40, "raised")]


def test_a_when_naming_no_sensor_is_a_config_error():
    from gateway.config import SensorConfig
    from stream.config import parse_rule, rule_problems

    row = parse_rule({"id": "door", "condition": "door_open", "kind": "contact", "state": "off",
                      "when": {"sensor": "outdor-t1", "below": 0}})  # fmt: skip
    sensor = SensorConfig(id="outdoor-t1", source={"type": "manual"})
    problems = list(rule_problems([row], [("s", sensor)]))
    assert problems == [
        (("rules", 0, "when", "sensor"),
         "no sensor 'outdor-t1' to look at: name one of the site's sensors")
    ]  # fmt: skip
