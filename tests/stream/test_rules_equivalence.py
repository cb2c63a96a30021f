"""The fast rules (`stream.rules`, mutable state, one pass per sensor) raise exactly the alarms
of the reference implementation (`tests/stream/rules_oracle.py`, the rules as they were) and
end in the same state, on random streams that reach every kind and every transition: raise,
escalate, clear, hold, flapping, late readings, stuck values, jumps and spikes, fault runs,
offline with ticks (and ticks held back)."""

from dataclasses import fields, is_dataclass
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.models import Reading
from stream import rules as fast
from stream.config import DEFAULT_RULES, FaultRule, OfflineRule, RiseRule, ThresholdRule
from stream.table import RuleTable
from tests.stream import rules_oracle as oracle

T0 = datetime(2026, 1, 15, 0, 0, tzinfo=UTC)

#: Rules that trip at the slightest cause, so that short random streams reach every transition.
TWITCHY = (
    FaultRule(
        id="fault",
        condition="sensor_fault",
        faults=2,
        stuck=600,
        stuck_tolerance=0.05,
        jump=10,
        jump_within=120,
        clear_after=2,
    ),
    ThresholdRule(
        id="freezing",
        condition="freezing",
        below=5,
        critical=2,
        clear=7,
        hold=60,
        flap_count=3,
        flap_window=1800,
        stable=300,
    ),
    ThresholdRule(id="fire", condition="fire", above=50, critical=70, clear=45, hold=0),
    RiseRule(
        id="rise",
        condition="heat_rise",
        rate=2,
        critical_rate=5,
        window=120,
        min_samples=3,
        min_span=20,
    ),
    OfflineRule(id="offline", condition="sensor_offline", after=300),
)
DEFAULTS = RuleTable(DEFAULT_RULES, {}).rules_for("s", "t1", "temperature")

#: values at and around every level of the rules above, and anywhere in between
LEVELS = [2.0, 5.0, 7.0, 45.0, 50.0, 70.0, 4.99, 5.01, 50.01, 49.99]
values = st.sampled_from(LEVELS) | st.floats(-20, 90, allow_nan=False) | st.just("same")
#: ms between steps: the rules' own durations (to land exactly on a hold, a stuck time, a
#: window's edge), equal times, bursts and gaps
gaps = st.sampled_from([0, 1_000, 10_000, 20_000, 60_000, 120_000, 300_000, 600_000]) | (
    st.integers(0, 400_000)
)
faults = st.none() | st.none() | st.sampled_from(["crc", "disconnected"])
reading_step = st.tuples(
    st.just("reading"),
    gaps,
    values | st.just("same"),
    faults,
    st.sampled_from([0, 0, 400]),  # seconds late: evaluated when the reading is this old
)
tick_step = st.tuples(st.just("tick"), gaps, st.booleans())
streams = st.lists(reading_step | tick_step, min_size=1, max_size=80)


def reading_of(i, ts, value, fault):
    """The `i`th reading of sensor t1: `value` at `ts`, or a fault reading."""
    return Reading(
        site="s",
        gateway="g",
        sensor="t1",
        kind="temperature",
        value=value,
        unit="°C",
        ts=ts,
        seq=i + 1,
        quality="fault" if fault else "good",
        fault=fault,
    )


def norm(value):
    """A state (either implementation's) as plain data, for comparing them."""
    if isinstance(value, (fast.RiseState, oracle.RiseState)):
        return ("rise", tuple(value.samples), norm(value.episode), value.pushed)
    if is_dataclass(value):
        return (type(value).__name__, *(norm(getattr(value, f.name)) for f in fields(value)))
    if isinstance(value, tuple):
        return tuple(norm(v) for v in value)
    return value


def states_of(states, rules):
    """Rule id → state; a missing threshold state is the idle one."""
    idle = norm(fast.ThresholdState())
    out = {rule.id: norm(states.get(rule.id)) for rule in rules}
    return {k: v for k, v in out.items() if v not in (None, idle)}


def replay(steps, rules):
    new_states, old_states = {}, {}
    t, last = T0, 21.0
    for i, step in enumerate(steps):
        if step[0] == "tick":
            _, gap, held = step
            t += timedelta(milliseconds=gap)
            for rule in rules:
                if not isinstance(rule, OfflineRule):
                    continue
                new_state = new_states.get(rule.id, fast.OfflineState())
                old_state = old_states.get(rule.id, oracle.OfflineState())
                new, new_alarms = fast.tick(new_state, rule, t, site="s", sensor="t1", held=held)
                old, old_alarms = oracle.tick(old_state, rule, t, site="s", sensor="t1", held=held)
                assert new_alarms == old_alarms, f"step {i}: tick"
                if new is not new_state:
                    new_states[rule.id] = new
                if old is not old_state:
                    old_states[rule.id] = old
            continue
        _, gap, value, fault, late = step
        t += timedelta(milliseconds=gap)
        value = last if value == "same" else value
        last = value
        reading = reading_of(i, t, value, fault)
        now = t + timedelta(seconds=late)
        new_states, new_alarms = fast.evaluate_sensor(new_states, reading, rules, now)
        old_states, old_alarms = oracle.evaluate_sensor(old_states, reading, rules, now)
        assert new_alarms == old_alarms, f"step {i}: {reading.value} at {reading.ts}"
        assert states_of(new_states, rules) == states_of(old_states, rules), f"step {i}"
    return new_states


@settings(max_examples=600, deadline=None)
@given(streams)
def test_the_fast_rules_raise_exactly_the_reference_alarms(steps):
    replay(steps, TWITCHY)


@settings(max_examples=300, deadline=None)
@given(streams)
def test_the_default_rules_raise_exactly_the_reference_alarms(steps):
    replay(steps, DEFAULTS)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5_000), st.floats(15, 95, allow_nan=False)), max_size=300))
def test_dense_rises_rate_exactly_as_the_reference(samples):
    """Many samples per window: the running sums, their evictions and resums."""
    steps = [("reading", gap, value, None, 0) for gap, value in samples]
    replay(steps, TWITCHY[3:4])


#: °C per minute at, a hair around and a step around every rate level: TWITCHY's rise (2,
#: clear 1, critical 5) and the default heat_rise (8.3, clear 4.15)
RATES = [
    level * factor
    for level in (1.0, 2.0, 5.0, 4.15, 8.3)
    for factor in (1.0, 1 - 1e-9, 1 + 1e-9, 0.98, 1.02)
]
ramps = st.lists(
    st.tuples(st.sampled_from(RATES) | st.floats(-3, 12), st.integers(1, 15)),
    min_size=1,
    max_size=8,
)


@settings(max_examples=300, deadline=None)
@given(ramps, st.sampled_from([10_000, 15_000, 30_000]))
def test_ramps_at_every_rate_level_rise_exactly_as_the_reference(segments, every):
    """Values climbing (and falling) at rates on, a hair off and just off each level of the
    rate rules: the decisions a running sum could get wrong by a rounding."""
    steps, value = [], 21.0
    for rate, count in segments:
        for _ in range(count):
            value += rate * every / 60_000
            steps.append(("reading", every, value, None, 0))
    replay(steps, TWITCHY)
    replay(steps, DEFAULTS)


def test_the_streams_reach_every_kind_of_alarm():
    """The generator is only a proof if it reaches the transitions: a hand-made stream through
    the twitchy rules raises, escalates and clears each condition."""
    steps = [("reading", 60_000, v, None, 0) for v in (21, 4, 4, 4, 1, 9, 9, 55, 75, 30, 30)]
    steps += [("reading", 1_000, v, None, 0) for v in (30, 40, 50, 60, 70, 40)]
    steps += [("reading", 60_000, 21, "crc", 0)] * 3 + [("reading", 60_000, 21, None, 0)] * 5
    steps += [("tick", 400_000, False), ("reading", 60_000, 21.5, None, 400)]
    seen = {(a.condition, a.state) for a in alarms_of(steps)}
    for condition in ("freezing", "fire", "heat_rise", "sensor_fault", "sensor_offline"):
        assert (condition, "raised") in seen
        assert (condition, "cleared") in seen


def alarms_of(steps):
    out = []
    states, t = {}, T0
    for i, step in enumerate(steps):
        if step[0] == "tick":
            t += timedelta(milliseconds=step[1])
            rule = TWITCHY[4]
            state = states.get(rule.id, fast.OfflineState())
            states[rule.id], raised = fast.tick(state, rule, t, site="s", sensor="t1")
            out += raised
            continue
        _, gap, value, fault, _late = step
        t += timedelta(milliseconds=gap)
        reading = reading_of(i, t, value, fault)
        states, alarms = fast.evaluate_sensor(states, reading, TWITCHY, t)
        out += alarms
    return out


#: values and times at the wire's bounds (LIMITS: |value| ≤ 1e12, years 2000–2200), the
#: smallest steps and no step at all
extreme_values = st.sampled_from([1e12, -1e12, 0.0, -0.0, 5e-324, 1e-12, 125.0, -55.0]) | (
    st.floats(-1e12, 1e12, allow_nan=False)
)
extreme_gaps = st.sampled_from([0, 1, 1_000_000, 200 * 365 * 86_400 * 1_000_000]) | (
    st.integers(0, 10**9)
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(extreme_gaps, extreme_values), min_size=1, max_size=60))
def test_readings_at_the_bounds_stop_no_compiled_rule_and_a_fire_still_raises(steps):
    """Readings at every bound, in bursts or two centuries apart, through the compiled pass of
    the default rules: nothing escapes it, the reference rules agree on every alarm (and on the
    sustained fire that follows), and a fresh sensor sharing the pass raises that fire."""
    start = datetime(2000, 1, 1, tzinfo=UTC)
    t, new_states, old_states = start, {}, {}
    for i, (gap_us, value) in enumerate(steps):
        t = min(t + timedelta(microseconds=gap_us), datetime(2199, 12, 31, tzinfo=UTC))
        reading = reading_of(i, t, value, None)
        new_states, new_alarms = fast.evaluate_sensor(new_states, reading, DEFAULTS, t)
        old_states, old_alarms = oracle.evaluate_sensor(old_states, reading, DEFAULTS, t)
        assert new_alarms == old_alarms, f"step {i}: {value} at {t}"
    fresh: dict = {}
    raised = set()
    for j in range(4):
        at = t + timedelta(minutes=j + 1)
        fire = reading_of(len(steps) + j, at, 99.0, None)
        new_states, new_alarms = fast.evaluate_sensor(new_states, fire, DEFAULTS, at)
        old_states, old_alarms = oracle.evaluate_sensor(old_states, fire, DEFAULTS, at)
        assert new_alarms == old_alarms, f"fire {j} on the same sensor"
        other = fire.model_copy(update={"sensor": "t2"})
        _, alarms = fast.evaluate_sensor(fresh, other, DEFAULTS, at)
        raised |= {a.condition for a in alarms if a.state == "raised"}
    assert "fire" in raised


fault_rows = st.builds(
    lambda jump, stuck, tolerance, faults: FaultRule(
        id="fault",
        condition="sensor_fault",
        faults=faults,
        jump=jump,
        jump_within=120,
        stuck=stuck,
        stuck_tolerance=tolerance,
        clear_after=2,
    ),
    st.sampled_from([None, 10.0, 0.5]),
    st.sampled_from([None, 0.0, 60.0, 600.0]),
    st.sampled_from([0.0, 0.05, 100.0]),
    st.sampled_from([0, 2]),
)


@settings(max_examples=300, deadline=None)
@given(fault_rows, streams)
def test_fault_rows_with_checks_off_or_at_zero_screen_exactly_as_the_reference(row, steps):
    """Fault rows with the jump or stuck check off (null), a stuck time of 0 (every reading is
    stuck) and any tolerance: the compiled quiet case stands in for an off check with a level
    no finite reading passes, and skips itself when every reading is stuck."""
    replay(steps, (row, *TWITCHY[1:]))
