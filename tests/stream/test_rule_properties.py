"""Properties that must hold for any readings, not just the ones we thought of."""

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from stream.config import DEFAULT_RULES, ThresholdRule
from stream.engine import EmbeddedEngine
from stream.rules import evaluate_sensor
from stream.table import RuleTable
from tests.factories import make_reading

T0 = datetime(2026, 1, 15, 0, 0, tzinfo=UTC)
TABLE = RuleTable(DEFAULT_RULES, {})
RULES = TABLE.rules_for("s", "t1", "temperature")

temperatures = st.floats(min_value=-40, max_value=120, allow_nan=False)
faults = st.sampled_from(["crc", "ds18b20-power-on-reset", "modbus-timeout", "disconnected"])


def alarms_of(readings, rules=RULES):
    states, out = {}, []
    for r in readings:
        states, alarms = evaluate_sensor(states, r, rules, r.ts)
        out += alarms
    return out


def readings_from(steps):
    """(gap seconds, value, fault or None) → readings of one sensor, seq and ts increasing."""
    out, t = [], 0.0
    for i, (gap, value, fault) in enumerate(steps):
        t += gap
        out.append(make_reading(t / 60, value, fault=fault, seq=i + 1, start=T0))
    return out


steps = st.lists(
    st.tuples(st.integers(1, 900), temperatures, st.none() | faults), min_size=1, max_size=60
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 900), temperatures, faults), min_size=1, max_size=60))
def test_fault_readings_never_raise_freezing_or_fire(steps):
    conditions = {a.condition for a in alarms_of(readings_from(steps))}
    assert conditions <= {"sensor_fault"}


@settings(max_examples=300, deadline=None)
@given(steps)
def test_fault_readings_slipped_in_change_no_freezing_or_fire_alarm(steps):
    good_only = [s for s in steps if s[2] is None]
    with_faults = readings_from(steps)
    # the same good readings, at the same times, without the faults in between
    times = [r.ts for r in with_faults if r.quality == "good"]
    without = [
        make_reading((ts - T0).total_seconds() / 60, v, seq=i + 1, start=T0)
        for i, (ts, (_, v, _)) in enumerate(zip(times, good_only, strict=True))
    ]

    def thresholds(alarms):
        return [
            (a.condition, a.state, a.severity, a.ts)
            for a in alarms
            if a.condition in ("freezing", "fire")
        ]

    assert thresholds(alarms_of(with_faults)) == thresholds(alarms_of(without))


@settings(max_examples=300, deadline=None)
@given(
    st.floats(min_value=-10, max_value=4.9),
    st.lists(st.floats(min_value=5.01, max_value=6.99), min_size=1, max_size=80),
)
def test_values_inside_the_hysteresis_band_never_flap_the_alarm(start, band):
    freezing = ThresholdRule(id="f", condition="freezing", below=5, clear=7, hold=0)
    readings = readings_from([(60, start, None)] + [(60, v, None) for v in band])
    alarms = alarms_of(readings, [freezing])
    assert [a.state for a in alarms] == ["raised"]  # raised once, and nothing after


def engine_with(sink, now):
    class Clock:
        def now(self):
            return now

        async def sleep(self, seconds):
            raise AssertionError("not used")

    return EmbeddedEngine(table=TABLE, clock=Clock(), sink=sink)


async def run_engine(batches):
    got = []

    async def sink(alarms):
        got.extend(alarms)

    engine = engine_with(sink, T0 + timedelta(days=2))
    for batch in batches:
        await engine.process_batch(batch)
    return got, engine.counts


@settings(max_examples=150, deadline=None)
@given(steps, st.data())
async def test_duplicates_change_nothing(steps, data):
    readings = readings_from(steps)
    resent = []
    for r in readings:
        resent.append(r)
        if data.draw(st.booleans()):
            back = data.draw(st.integers(0, len(resent) - 1))
            resent.extend(resent[back:])  # a batch sent again after a lost acknowledgement
    once, _ = await run_engine([readings])
    again, counts = await run_engine([resent])
    assert again == once
    assert counts["duplicate"] == len(resent) - len(readings)


@settings(max_examples=150, deadline=None)
@given(steps, st.lists(st.integers(1, 20), max_size=20))
async def test_batch_boundaries_do_not_change_the_alarms(steps, cuts):
    readings = readings_from(steps)
    batches, i = [], 0
    for size in cuts:
        batches.append(readings[i : i + size])
        i += size
    batches.append(readings[i:])
    whole, _ = await run_engine([readings])
    split, _ = await run_engine(batches)
    assert split == whole


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.integers(1, 60), st.floats(0, 40)), min_size=1, max_size=20),
    st.floats(min_value=51, max_value=120),
    st.lists(st.tuples(st.integers(1, 60), st.floats(-1, 1)), min_size=2, max_size=10),
)
def test_a_step_to_fire_that_persists_raises_fire_by_the_second_reading_after_it(
    before, level, after
):
    """However sudden the step (an impossible jump for the fault rule), once the next reading
    confirms it, fire is raised: a real fire is held back by one reading at most."""
    steps = [(gap, value, None) for gap, value in before]
    steps += [(gap, max(level + noise, 50.5), None) for gap, noise in after]
    readings = readings_from(steps)
    second_after = readings[len(before) + 1].ts
    fire = [a for a in alarms_of(readings) if a.condition == "fire" and a.state == "raised"]
    assert fire and fire[0].ts <= second_after


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 20_000), st.floats(-40, 120)), min_size=2, max_size=300),
    st.integers(10, 600),
)
def test_the_incremental_rate_of_rise_is_the_least_squares_slope(gaps_ms, window):
    from stream.rules import RiseState, micros, rise_rate

    state = RiseState()
    t = T0
    for gap, value in gaps_ms:
        t += timedelta(milliseconds=gap)
        state.push(micros(t), value, window)
        samples = tuple(state.samples)
        assert all((t - s[0]).total_seconds() <= window for s in samples)
        exact = rise_rate(samples)
        got = state.rate(())
        if exact is None or state.span() < 1.0:
            continue  # no rate, or one the rule would not take (min_span)
        assert abs(got - exact) <= 1e-6 * max(1.0, abs(exact)), (got, exact)


def _state_rules():
    from stream.config import parse_rule

    row = parse_rule({"id": "door", "condition": "door_open", "kind": "contact", "state": "off",
                      "hold": "5m", "flap_count": 4, "flap_window": "1h", "stable": "30m"})  # fmt: skip
    return RuleTable([row, *DEFAULT_RULES], {}).rules_for("s", "d1", "contact")


#: A door's evening: spells open (off) and shut (on), each with a reading as it starts and
#: as it ends; mostly short, as a door that keeps being opened.
spells = st.lists(st.tuples(st.integers(0, 900), st.integers(1, 900)), max_size=60)


@settings(max_examples=300, deadline=None)
@given(spells)
def test_an_on_off_sensor_never_flaps_cases(steps):
    """However a door sensor toggles, its condition alternates raised → cleared (never raised
    twice, never cleared unraised), is raised at most three times within any flap window of an
    hour (the fourth change there makes it flapping: it stays raised until stable), and a
    state shown for less than the hold raises nothing."""
    rules = _state_rules()
    points, t = [], 0.0
    for open_for, shut_for in steps:
        points += [(t, 0.0), (t + open_for, 0.0), (t + open_for + 1, 1.0)]
        t += open_for + 1 + shut_for
    readings = []
    for i, (at, state) in enumerate(points):
        r = make_reading(at / 60, state, seq=i + 1, start=T0, sensor="d1")
        readings.append(r.model_copy(update={"kind": "contact", "unit": "bool"}))
    alarms = [a for a in alarms_of(readings, rules) if a.condition == "door_open"]
    raised = False
    for a in alarms:
        if a.state == "raised":
            assert not raised
            raised = True
        elif a.state == "cleared":
            assert raised
            raised = False
    raises = [a.ts for a in alarms if a.state == "raised"]
    for i, at in enumerate(raises):
        within = [b for b in raises[i:] if (b - at).total_seconds() < 3600]
        assert len(within) <= 3, raises
    for a in alarms:
        if a.state == "raised":
            assert (a.ts - a.started_at).total_seconds() >= 300  # held for 5 minutes
    assert not [a for a in alarms_of(readings, rules) if a.condition == "sensor_fault"]


@settings(max_examples=500, deadline=None)
@given(st.floats(0, 86_400 * 365, allow_nan=False) | st.integers(0, 86_400).map(float))
def test_whole_micros_decide_a_window_as_seconds_do(seconds):
    """The rate-of-rise step compares whole µs where `push` divides by 1e6: the same
    decision at every µs around the edge of a window or a minimum span."""
    from stream.kinds.base import below_micros, within_micros

    within, below = within_micros(seconds), below_micros(seconds)
    for d in range(max(0, within - 2), within + 3):
        assert (d > within) == (d / 1e6 > seconds)
    for d in range(max(0, below - 2), below + 3):
        assert (d <= below) == (d / 1e6 < seconds)


def test_ten_days_of_readings_keep_the_rate_of_rise_exact_and_its_cost_flat():
    """Ten days of readings every 10 s (and a jitter of up to a second) through the compiled
    pass and through `push`: the running sums give the least-squares slope of the window to
    within 1e-9, and they are recomputed from the samples as they go, so that the samples'
    times stay within a few windows of their base (never recomputed, the times grow to
    millions of seconds, and the sums lose so much to rounding that each reading needs the
    exact slope: a cost per reading that grows with the window)."""
    import random

    from stream.config import DEFAULT_RULES
    from stream.kinds.rise import RESUM
    from stream.rules import RiseState, evaluate_sensor, micros
    from stream.table import RuleTable

    rules = RuleTable(DEFAULT_RULES, {}).rules_for("s", "t1", "temperature")
    rng = random.Random(3)
    states: dict = {}
    pushed = RiseState()
    t, value = T0, 21.0
    for i in range(10 * 8640):
        t += timedelta(seconds=10, microseconds=rng.randrange(1_000_000))
        value += rng.gauss(0, 0.2) - (value - 21.0) * 0.05
        states, _ = evaluate_sensor(states, make_reading(0, value, seq=i + 1, start=t), rules, t)
        pushed.push(micros(t), value, 120.0)
    for state in (states["heat-rise"], pushed):
        exact = state.exact_rate()
        running = state.rate(())
        assert exact is not None and running is not None
        assert abs(running - exact) <= 1e-9 * max(1.0, abs(exact)), (running, exact)
        assert state.offsets[-1] <= (RESUM + 2) * 120 * 1_000_000
