from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream.config import ThresholdRule as RuleRow
from stream.config import parse_rule
from stream.rules import ThresholdState as RuleState
from stream.rules import evaluate
from tests.factories import make_reading

T0 = datetime(2026, 1, 15, 0, 0, tzinfo=UTC)
FREEZING = RuleRow(id="freezing", condition="freezing", below=5, critical=2, clear=7, hold=600)
FIRE = RuleRow(id="fire", condition="fire", above=50, critical=57, clear=45)


def reading(minute, value, fault=None, seq=0):
    return make_reading(minute, value, fault=fault, seq=seq, start=T0)


def run(rule, samples, state=None):
    """Feed (minute, value[, fault]) samples; return [(minute, state, severity)] and the state."""
    state = state or RuleState()
    out = []
    for sample in samples:
        r = reading(*sample)
        state, alarms = evaluate(state, r, rule, r.ts)
        out += [((a.ts - T0) / timedelta(minutes=1), a.state, a.severity) for a in alarms]
    return out, state


@pytest.mark.parametrize(
    ("name", "rule", "samples", "expected"),
    [
        (
            "held below 5 for 10 min raises once",
            FREEZING,
            [(0, 6), (1, 4.9), (6, 4.5), (11, 4.4), (12, 4.3), (30, 3.0)],
            [(11, "raised", "warning")],
        ),
        (
            "a dip shorter than the hold raises nothing",
            FREEZING,
            [(0, 4.9), (5, 4.8), (9, 5.1), (15, 4.9), (24, 4.9)],
            [],
        ),
        (
            "exactly 5.0 counts as below",
            FREEZING,
            [(0, 5.0), (10, 5.0)],
            [(10, "raised", "warning")],
        ),
        (
            "critical level escalates with 'updated'",
            FREEZING,
            [(0, 4), (10, 3), (20, 2.0), (30, 1.5), (40, 1.0)],
            [(10, "raised", "warning"), (20, "updated", "critical")],
        ),
        (
            "raised straight to critical when already that cold",
            FREEZING,
            [(0, 1.5), (10, 1.0)],
            [(10, "raised", "critical")],
        ),
        (
            "hysteresis: 5..7 neither clears nor re-raises",
            FREEZING,
            [(0, 4), (10, 4), (11, 6.9), (12, 4.5), (13, 6.99), (14, 5.5)],
            [(10, "raised", "warning")],
        ),
        (
            "clears at 7 and a new episode needs a new hold",
            FREEZING,
            [(0, 4), (10, 4), (20, 7.0), (21, 4), (25, 4), (31, 4)],
            [(10, "raised", "warning"), (20, "cleared", "warning"), (31, "raised", "warning")],
        ),
        (
            "severity never falls within an episode",
            FREEZING,
            [(0, 1), (10, 1), (20, 4), (30, 1)],
            [(10, "raised", "critical")],
        ),
        (
            "fire raises at once above 50",
            FIRE,
            [(0, 40), (1, 50.0), (2, 50.1)],
            [(2, "raised", "warning")],
        ),
        (
            "fire escalates above 57 and clears at 45",
            FIRE,
            [(0, 51), (1, 58), (2, 46), (3, 45)],
            [(0, "raised", "warning"), (1, "updated", "critical"), (3, "cleared", "critical")],
        ),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_threshold_rule(name, rule, samples, expected):
    assert run(rule, samples)[0] == expected, name


def test_fault_readings_neither_raise_nor_clear():
    out, state = run(
        FREEZING,
        [(0, 85.0, "ds18b20-power-on-reset"), (1, -127.0, "disconnected"), (20, 0.0, "crc")],
    )
    assert out == [] and state == RuleState()
    out, state = run(FREEZING, [(0, 4), (10, 4), (11, 20.0, "out-of-range")])
    assert out == [(10, "raised", "warning")] and state.phase == "raised"


def test_a_fault_inside_the_hold_does_not_restart_it():
    out, _ = run(FREEZING, [(0, 4), (5, 0.0, "crc"), (10, 4)])
    assert out == [(10, "raised", "warning")]


def test_an_alarm_carries_its_episode_and_true_start():
    state = RuleState()
    alarms = []
    for minute, value in [(0, 6), (3, 4.5), (13, 4.0), (30, 7.5)]:
        r = reading(minute, value)
        state, new = evaluate(state, r, FREEZING, r.ts)
        alarms += new
    raised, cleared = alarms
    assert raised.started_at == T0 + timedelta(minutes=3)
    assert raised.episode == cleared.episode == "freezing:s:t1:20260115T000300Z"
    assert (raised.value, raised.threshold, cleared.threshold) == (4.0, 5.0, 7.0)
    assert raised.to_wire()["started_at"] == "2026-01-15T00:03:00Z"


def test_readings_evaluated_long_after_they_were_measured_are_late():
    r = reading(10, 4)
    _, alarms = evaluate(
        RuleState(phase="pending", since=T0), r, FREEZING, r.ts + timedelta(hours=1)
    )
    assert alarms[0].late is True
    _, alarms = evaluate(
        RuleState(phase="pending", since=T0), r, FREEZING, r.ts + timedelta(seconds=5)
    )
    assert alarms[0].late is False


def test_a_disabled_rule_never_alarms():
    off = RuleRow(id="off", condition="fire", enabled=False)
    assert run(off, [(0, 90), (1, 99)])[0] == []


values = st.floats(min_value=-50, max_value=120, allow_nan=False)


@settings(max_examples=300)
@given(
    st.lists(
        st.tuples(
            values,
            st.sampled_from(["crc", "disconnected", "ds18b20-power-on-reset", "out-of-range"]),
        ),
        max_size=60,
    )
)
def test_property_fault_readings_never_raise_freezing_or_fire(faults):
    for rule in (FREEZING, FIRE):
        samples = [(i, v, f) for i, (v, f) in enumerate(faults)]
        assert run(rule, samples)[0] == []


@settings(max_examples=300)
@given(st.lists(st.floats(min_value=5.0001, max_value=6.9999), max_size=60))
def test_property_values_inside_the_hysteresis_band_never_flap(band_values):
    _, raised = run(FREEZING, [(0, 4.0), (10, 4.0)])
    samples = [(11 + i, v) for i, v in enumerate(band_values)]
    out, state = run(FREEZING, samples, state=raised)
    assert out == [] and state == raised
    out, state = run(FREEZING, samples)  # and from idle, they never raise
    assert out == [] and state == RuleState()


LEAK = parse_rule({"id": "leak", "condition": "leak", "kind": "water_leak", "state": "on"})
DOOR = parse_rule(
    {"id": "door", "condition": "door_open", "kind": "contact", "state": False, "hold": "30m"}
)


@pytest.mark.parametrize(
    ("rule", "samples", "expected"),
    [
        # water reported: a case the same minute; dry again: cleared
        (LEAK, [(0, 0), (1, 0), (2, 1), (3, 1), (9, 0), (10, 0)], [(2, "raised"), (9, "cleared")]),
        # a door open (contact off) for under 30 min raises nothing; left open, it does
        (DOOR, [(0, 1), (5, 0), (20, 1), (40, 0), (69, 0), (70, 0), (75, 1)],
         [(70, "raised"), (75, "cleared")]),
        # a detector reporting faults raises no leak
        (LEAK, [(0, 0), (1, 1, "not-a-state"), (2, 1, "not-a-state")], []),
    ],
)  # fmt: skip
def test_a_state_row_raises_while_the_sensor_shows_its_state(rule, samples, expected):
    out, _ = run(rule, samples)
    assert [(minute, what) for minute, what, _ in out] == expected


def test_a_state_row_names_the_kind_of_its_sensors_and_takes_no_levels():
    with pytest.raises(ValueError, match="kind"):
        parse_rule({"id": "leak", "condition": "leak", "state": True})
    with pytest.raises(ValueError, match="takes no above, clear"):
        parse_rule(
            {"id": "leak", "condition": "leak", "kind": "w", "state": 1, "above": 1, "clear": 0}
        )


def test_a_written_out_rule_that_fails_starts_again_mutes_nothing_and_shows_its_line(caplog):
    """A rule whose quiet case is compiled into the sensor's pass (rate of rise) fails on a
    reading (its saved state holds text where a time belongs): that rule starts again, the
    sensor's other rules still see the reading (the fire is raised), and the log shows the
    line of the pass that failed, as for any function."""
    from stream.config import DEFAULT_RULES
    from stream.rules import RiseState, evaluate_sensor
    from stream.table import RuleTable

    rules = RuleTable(DEFAULT_RULES, {}).rules_for("s", "t1", "temperature")
    broken = RiseState.of_micros([(0, 20.0)])
    broken.offsets[0] = "not a time"  # type: ignore[call-overload]
    reading = make_reading(0, 99.0, seq=1)
    states, alarms = evaluate_sensor({"heat-rise": broken}, reading, rules, reading.ts)
    assert [(a.condition, a.state) for a in alarms] == [("fire", "raised")]
    assert "heat-rise" not in states or states["heat-rise"] is not broken
    assert states["sensor-offline"].last_good == reading.ts  # the rule after it saw it too
    assert "rule heat-rise failed" in caplog.text
    assert "_d - r3_offsets[0]" in caplog.text  # the pass's own source line, in the traceback
    later = make_reading(1, 99.5, seq=2)
    states, alarms = evaluate_sensor(states, later, rules, later.ts)
    assert isinstance(states["heat-rise"], RiseState) and len(states["heat-rise"]) == 1


def test_no_text_of_a_config_becomes_compiled_source():
    """The compiled pass of a sensor holds only our own statements: its rules' ids, conditions
    and levels reach it as bound values, never as text (a config is outside input too)."""
    import linecache

    from stream.config import DEFAULT_RULES
    from stream.rules import _plan
    from stream.table import RuleTable

    rows = [
        parse_rule({"id": "frost-zz9q", "condition": "freezing", "below": 4.25, "clear": 6.75}),
        *DEFAULT_RULES,
    ]
    rules = RuleTable(rows, {}).rules_for("s", "t1", "temperature")
    source = "".join(linecache.getlines(_plan(rules).__code__.co_filename))
    assert "def sensor_pass" in source
    for text in ("frost-zz9q", "4.25", "6.75", "freezing", "heat-rise", "8.3"):
        assert text not in source, text
