"""The meter kind: counters read as consumption (per interval, night flow, spike, stopped),
with wraps, resets and glitches never inventing consumption."""

from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from gateway.models import Reading
from stream.config import DEFAULT_RULES, MeterRule, parse_rule
from stream.core import GatewayTrack, decode_track, encode_track, on_reading
from stream.kinds.meter import Counter, daily_consumption
from stream.rules import MeterState, evaluate_sensor
from stream.table import RuleTable

T0 = datetime(2026, 1, 12, 0, 0, tzinfo=UTC)  # a Monday


def meter_reading(at, value, *, sensor="w1", seq=0, site="s", quality="good"):
    return Reading(
        site=site,
        gateway="g",
        sensor=sensor,
        kind="water",
        value=value,
        unit="l",
        ts=at,
        seq=seq,
        quality=quality,
        fault=None if quality == "good" else "sensor-error",
    )


def run(rules, samples):
    """Feed (time, counter) samples through `rules` (and the default rows); return
    [(time, condition, state, value)] of every alarm."""
    table = RuleTable([*rules, *DEFAULT_RULES], {}, {"s": "Europe/Stockholm"})
    chosen = table.rules_for("s", "w1", "water")
    states, out = {}, []
    for i, (at, value) in enumerate(samples, 1):
        r = meter_reading(at, value, seq=i)
        states, alarms = evaluate_sensor(states, r, chosen, r.ts)
        out += [(a.ts, a.condition, a.state, a.value) for a in alarms]
    return out


def every(start, step, values):
    return [(start + i * step, v) for i, v in enumerate(values)]


NIGHT = parse_rule(
    {"id": "night", "condition": "night_flow", "kind": "water", "meter": "night_flow",
     "hours": "01:00-05:00", "above": 50, "title": {"en": "Water running at night"}}
)  # fmt: skip


def test_night_flow_raises_in_the_night_in_local_time_and_clears_after_a_quiet_night():
    # Stockholm is UTC+1 in January: the window 01:00–05:00 local is 00:00–04:00 UTC.
    # A tap left running: 20 l every 15 minutes from 00:00 UTC (01:00 local), all night.
    quarter = timedelta(minutes=15)
    running = every(T0, quarter, [1000 + 20 * i for i in range(17)])
    alarms = run([NIGHT], running)
    assert [(c, s) for _, c, s, _ in alarms] == [("night_flow", "raised")]
    at, _, _, used = alarms[0]
    assert at == T0 + 3 * quarter and used == 60  # raised as soon as the night passed 50 l
    # the next night is quiet (10 l), and the one after: it clears once a quiet night ends
    day = T0 + timedelta(days=1)
    quiet = every(day, quarter, [1320 + (i // 8) * 5 for i in range(20)])
    later = every(day + timedelta(days=1), quarter, [1400] * 20)
    alarms = run([NIGHT], running + quiet + later)
    assert [(c, s) for _, c, s, _ in alarms] == [
        ("night_flow", "raised"),
        ("night_flow", "cleared"),
    ]
    cleared_at, _, _, night_used = alarms[1]
    assert cleared_at == day + 16 * quarter and night_used == 10  # the first reading after 05:00


def test_daytime_consumption_is_no_night_flow():
    # 40 l an hour all day long is a school at work: nothing in the night window
    hour = timedelta(hours=1)
    day = every(T0 + timedelta(hours=6), hour, [500 + 40 * i for i in range(15)])
    assert run([NIGHT], day) == []


def test_a_step_across_the_window_edge_counts_only_its_share_inside():
    # one reading at 23:30 UTC (00:30 local) and the next at 00:30 UTC (01:30 local): half of
    # the 120 l step falls inside the window
    row = NIGHT.model_copy(update={"above": 59.0})
    samples = [(T0 - timedelta(minutes=30), 0), (T0 + timedelta(minutes=30), 120)]
    assert [v for *_, v in run([row], samples)] == [60.0]
    assert run([NIGHT.model_copy(update={"above": 61.0})], samples) == []


CONSUMPTION = parse_rule(
    {"id": "burst", "condition": "heavy_use", "kind": "water", "meter": "consumption",
     "interval": "1h", "above": 500, "clear": 100}
)  # fmt: skip


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([0, 100, 200, 300], []),  # 300 l in an hour: under the level
        ([0, 200, 400, 600], [("heavy_use", "raised")]),  # 600 l within the hour
        # raised, then a busy hour (300 l: above clear) keeps it, a quiet hour clears it
        (
            [0, 200, 400, 600, 700, 800, 900, 1000, 1010, 1020, 1030, 1040, 1040],
            [("heavy_use", "raised"), ("heavy_use", "cleared")],
        ),
    ],
)
def test_consumption_per_interval(values, expected):
    samples = every(T0 + timedelta(hours=8, minutes=5), timedelta(minutes=15), values)
    assert [(c, s) for _, c, s, _ in run([CONSUMPTION], samples)] == expected


SPIKE = parse_rule(
    {"id": "spike", "condition": "meter_spike", "kind": "water", "meter": "spike",
     "factor": 3, "days": 14, "min_days": 7}
)  # fmt: skip


def test_a_day_far_above_the_median_day_is_a_spike_once_enough_days_are_known():
    counter, samples = 0.0, []
    usage = [100, 110, 90, 105, 95, 100, 102, 400, 100, 100]  # day 8: four times the usual
    for day, used in enumerate(usage):
        for hour in range(0, 24, 2):
            samples.append((T0 + timedelta(days=day, hours=hour), counter))
            counter += used / 12
    samples.append((T0 + timedelta(days=len(usage)), counter))
    alarms = run([SPIKE], samples)
    assert [(c, s) for _, c, s, _ in alarms] == [
        ("meter_spike", "raised"),
        ("meter_spike", "cleared"),
    ]
    raised_at = alarms[0][0]
    assert raised_at.date() == (T0 + timedelta(days=7)).date()  # during the spike day itself
    assert alarms[1][0].date() == (T0 + timedelta(days=9)).date()  # after the next normal day
    # a week of history is needed: the same big day on day 3 raises nothing
    early = run([SPIKE], [(at, v) for at, v in samples if at < T0 + timedelta(days=3)])
    assert early == []


STOPPED = parse_rule(
    {"id": "stopped", "condition": "meter_stopped", "kind": "water", "meter": "stopped",
     "after": "24h"}
)  # fmt: skip


def test_a_counter_that_stops_moving_while_readings_come_is_a_stopped_meter():
    hour = timedelta(hours=1)
    samples = every(T0, hour, [10, 11, 12] + [12] * 30 + [13])
    alarms = run([STOPPED], samples)
    assert [(c, s) for _, c, s, _ in alarms] == [
        ("meter_stopped", "raised"),
        ("meter_stopped", "cleared"),
    ]
    assert alarms[0][0] == T0 + 26 * hour  # 24 h after it last moved (at 02:00)


def test_a_counter_standing_still_all_weekend_is_no_sensor_fault():
    # the default fault row's `stuck` (6 h) would call an unused water meter broken: on a
    # sensor a meter row watches, only fault readings count
    hour = timedelta(hours=1)
    samples = every(T0, hour, [500.0] * 60)
    assert run([NIGHT], samples) == []
    # ... and fault readings still raise sensor_fault
    table = RuleTable([NIGHT, *DEFAULT_RULES], {}, {})
    rules, states, got = table.rules_for("s", "w1", "water"), {}, []
    for i in range(4):
        r = meter_reading(T0 + i * hour, 0, seq=i + 1, quality="fault")
        states, alarms = evaluate_sensor(states, r, rules, r.ts)
        got += [(a.condition, a.state) for a in alarms]
    assert got == [("sensor_fault", "raised")]


@pytest.mark.parametrize(
    ("values", "rollover", "consumed"),
    [
        ([10, 20, 35], None, 25),  # counting
        ([4294967290, 4294967295, 3, 10], 4294967296, 16),  # a uint32 counter wraps
        ([100, 120, 0, 5, 9], None, 29),  # reset to 0 (meter replaced): counts from there
        ([100, 120, 0, 125, 130], None, 30),  # one bad reading of 0: a glitch, nothing invented
        ([100, 120, 7, 7, 121], None, 21),  # a glitch held for two readings
        ([990, 998, 5], 1000, 15),  # wrapped from the top tenth to the bottom tenth
        ([500, 998, 400], 1000, 498),  # a drop from mid-range is a reset, not a wrap
    ],
)
def test_counter_steps(values, rollover, consumed):
    counter = Counter()
    assert sum(counter.step(v, rollover) for v in values) == consumed


@st.composite
def meters(draw):
    """A true meter's increments and what it reports: wrapped at `rollover` (if any), with
    resets to 0 and single glitched readings (a lower value between genuine ones)."""
    rollover = draw(st.sampled_from([None, 1000.0, 65536.0]))
    cap = (rollover or 1e6) * 0.09  # a wrap is only seen as one when steps are small
    steps = draw(st.lists(st.floats(0, cap, allow_nan=False), min_size=1, max_size=60))
    events = draw(st.lists(st.sampled_from(["ok", "ok", "ok", "reset", "glitch"]),
                           min_size=len(steps), max_size=len(steps)))  # fmt: skip
    start = draw(st.floats(0, (rollover or 1e6) * 0.5))
    return rollover, start, steps, events


@settings(max_examples=300, deadline=None)
@given(meters())
def test_wraps_resets_and_glitches_never_create_phantom_consumption(meter):
    rollover, start, steps, events = meter
    counter, true_total, counted = Counter(), 0.0, 0.0
    raw = start
    counted += counter.step(raw, rollover)
    faulty = False
    for used, event in zip(steps, events, strict=True):
        if event == "reset" and (rollover is None or raw < 0.9 * rollover):
            raw = 0.0  # the meter starts again at 0 (what it used before is unknown)
            faulty = True
        raw += used
        true_total += used
        if rollover is not None:
            raw %= rollover
        shown = raw
        if event == "glitch" and raw > 0:
            counted += counter.step(raw / 2, rollover)  # one bad reading, then the genuine one
            faulty = True
        counted += counter.step(shown, rollover)
    tolerance = 1e-6 * max(1.0, true_total, rollover or 0.0)
    assert counted <= true_total + tolerance
    if not faulty:
        assert abs(counted - true_total) <= tolerance  # nothing lost either


def test_daily_consumption_shares_each_step_among_the_local_days_it_spans():
    points = [
        (datetime(2026, 1, 12, 22, 0, tzinfo=UTC), 0.0),  # 23:00 in Stockholm
        (datetime(2026, 1, 13, 0, 0, tzinfo=UTC), 20.0),  # 01:00 next day: half each
        (datetime(2026, 1, 13, 12, 0, tzinfo=UTC), 50.0),
    ]
    days = daily_consumption(points, timezone="Europe/Stockholm")
    assert days == {date(2026, 1, 12): 10.0, date(2026, 1, 13): 40.0}


def test_a_meters_state_survives_a_restart():
    table = RuleTable([SPIKE, NIGHT, *DEFAULT_RULES], {}, {"s": "Europe/Stockholm"})
    gw = GatewayTrack(site="s", gateway="g")
    for i in range(30):
        r = meter_reading(T0 + timedelta(hours=5 * i), 100.0 * i, seq=i + 1)
        on_reading(gw, r, table, r.ts, late_after=300)
    restored = decode_track(encode_track(gw))
    assert restored == gw
    state = restored.sensors["w1"].states["spike"]
    assert isinstance(state, MeterState) and len(state.days) == 6  # Jan 12–17, local


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"meter": "night_flow"}, "needs 'above'"),
        ({"meter": "stopped", "above": 5}, "takes no 'above'"),
        ({"meter": "consumption", "above": 5, "clear": 9}, "must be below 'above'"),
        ({"meter": "night_flow", "above": 5, "hours": "late"}, "HH:MM-HH:MM"),
        ({"meter": "spike", "timezone": "Mars/Olympus"}, "unknown IANA time zone"),
        ({"meter": "spike", "condition": "freezing"}, "built-in condition"),
        ({"meter": "spike", "kind": None}, "kind"),
    ],
)
def test_a_meter_row_that_cannot_work_is_refused_with_the_reason(row, message):
    data = {"id": "m", "condition": "use", "kind": "water", **row}
    with pytest.raises(ValidationError, match=message):
        parse_rule(data)


def test_a_meter_row_takes_its_sites_time_zone_unless_it_names_one():
    assert isinstance(NIGHT, MeterRule) and NIGHT.timezone is None
    table = RuleTable([NIGHT], {}, {"s": "Europe/Stockholm"})
    (row,) = [r for r in table.rules_for("s", "w1", "water") if isinstance(r, MeterRule)]
    assert row.timezone == "Europe/Stockholm"
    own = NIGHT.model_copy(update={"timezone": "UTC"}).bound("Europe/Stockholm", None)
    assert own.timezone == "UTC"


def test_readings_no_meter_counts_at_change_nothing_and_a_night_flow_still_raises():
    """Year-1 times, a 30-year silence, a counter near 10^15: the meter neither crashes nor
    invents consumption, and a genuine night flow afterwards raises as always."""
    hostile = [
        (datetime(1, 1, 1, tzinfo=UTC), 5.0),
        (datetime(1, 1, 1, 0, 1, tzinfo=UTC), 1e15),
        (T0 - timedelta(days=365 * 30), 999_999_999_999_999.0),
        (T0 - timedelta(days=2), 1000.0),  # after 30 silent years; then a drop: a reset
    ]
    quarter = timedelta(minutes=15)
    running = every(T0, quarter, [1000 + 20 * i for i in range(17)])
    alarms = run([NIGHT], hostile + running)
    assert [(c, s) for _, c, s, _ in alarms] == [("night_flow", "raised")]
    assert alarms[0][0] == T0 + 3 * quarter and alarms[0][3] == 60


def test_a_rule_that_fails_on_a_reading_starts_again_and_mutes_nothing():
    """A meter state that no clock can hold (a corrupt saved state) makes its rule fail on the
    next reading: that rule starts again, the sensor's other rules see the reading, and the
    night flow is raised from the following readings."""
    table = RuleTable([NIGHT, *DEFAULT_RULES], {}, {"s": "Europe/Stockholm"})
    rules = table.rules_for("s", "w1", "water")
    broken = MeterState(at=10**20, period=10**20)
    states, alarms = {"night": broken}, []
    quarter = timedelta(minutes=15)
    for i, (at, value) in enumerate(every(T0, quarter, [1000 + 20 * i for i in range(17)]), 1):
        r = meter_reading(at, value, seq=i)
        states, produced = evaluate_sensor(states, r, rules, r.ts)
        alarms += [(a.ts, a.condition, a.state) for a in produced]
    assert states["night"] is not broken and states["sensor-offline"].last_good is not None
    assert alarms == [(T0 + 4 * quarter, "night_flow", "raised")]  # one reading later
