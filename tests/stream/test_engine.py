import asyncio
import math
from datetime import UTC, datetime, timedelta

from gateway.quarantine import Quarantine, SqliteQuarantine
from stream.config import DEFAULT_RULES
from stream.engine import EmbeddedEngine
from stream.table import RuleTable
from tests.factories import make_reading

T0 = datetime(2026, 1, 15, 1, 0, tzinfo=UTC)


class FixedClock:
    def __init__(self, now):
        self.value = now

    def now(self):
        return self.value

    async def sleep(self, seconds):
        self.value += timedelta(seconds=seconds)


def reading(minute, value, sensor="t1", seq=0):
    return make_reading(minute, value, sensor=sensor, seq=seq, start=T0)


async def feed(engine, samples):
    for i, (minute, value, *rest) in enumerate(samples):
        await engine.process(reading(minute, value, *rest, seq=i))


async def test_the_engine_hands_each_alarm_to_the_sink_in_order():
    got = []

    async def sink(alarms):
        got.extend(alarms)

    engine = EmbeddedEngine(
        table=RuleTable(DEFAULT_RULES, {}), clock=FixedClock(T0 + timedelta(hours=2)), sink=sink
    )
    await feed(
        engine, [(0, 4.0), (5, 3.0, "t2"), (10, 3.0), (15, 2.5, "t2"), (20, 1.5), (21, 60.0, "t2")]
    )
    assert [(a.sensor, a.condition, a.state, a.severity) for a in got] == [
        ("t1", "freezing", "raised", "warning"),
        ("t2", "freezing", "raised", "warning"),
        ("t1", "freezing", "updated", "critical"),
        ("t2", "freezing", "cleared", "warning"),
        ("t2", "fire", "raised", "critical"),
    ]
    assert all(a.late for a in got)  # evaluated an hour or more after measurement


async def test_a_batch_of_two_gateways_readings_keeps_each_gateways_numbering():
    """An in-process gateway's batch may hold several gateways' readings, interleaved: each
    is deduplicated by its own gateway's seq (the same numbers from another gateway are no
    duplicates), and every sensor's frost is raised."""
    got = []

    async def sink(alarms):
        got.extend(alarms)

    engine = EmbeddedEngine(
        table=RuleTable(DEFAULT_RULES, {}), clock=FixedClock(T0 + timedelta(hours=1)), sink=sink
    )
    batch = [
        make_reading(minute, value, sensor=sensor, gateway=gateway, seq=seq, start=T0)
        for minute, seq in ((0, 1), (10, 2))
        for sensor, gateway, value in (("t1", "g1", 4.0), ("t2", "g2", 3.0))
    ]
    await engine.process_batch([*batch, batch[2]])  # and g1's second reading again
    assert engine.counts["readings"] == 4 and engine.counts["duplicate"] == 1
    assert [(a.sensor, a.condition, a.state) for a in got] == [
        ("t1", "freezing", "raised"),
        ("t2", "freezing", "raised"),
    ]


async def test_out_of_order_readings_are_counted_and_ignored():
    got = []

    async def sink(alarms):
        got.extend(alarms)

    engine = EmbeddedEngine(
        table=RuleTable(DEFAULT_RULES, {}), clock=FixedClock(T0 + timedelta(minutes=20)), sink=sink
    )
    await feed(engine, [(0, 4.0), (10, 8.0), (5, 4.0), (11, 4.0)])
    assert got == []
    assert engine.counts["out_of_order"] == 1
    assert engine.counts["readings"] == 3


async def test_a_restart_continues_hold_timers_and_hysteresis_where_they_were(tmp_path):
    from stream.state import SqliteRuleState

    # 4.5 from minute 0: the 10-minute hold runs across the restart at minute 6; after the
    # raise the value sits in the hysteresis band (5..7) across a second restart, then clears.
    night = [(0, 4.5), (3, 4.4), (6, 4.4), (9, 4.3), (10, 4.3), (14, 6.0), (18, 6.5), (22, 7.5)]
    readings = [reading(m, v, seq=i + 1) for i, (m, v) in enumerate(night)]

    async def run(parts, path):
        got = []

        async def sink(alarms):
            got.extend(alarms)

        for part in parts:
            state = SqliteRuleState(path) if path else None
            engine = EmbeddedEngine(
                table=RuleTable(DEFAULT_RULES, {}),
                clock=FixedClock(T0 + timedelta(minutes=30)),
                sink=sink,
                state=state,
            )
            await engine.process_batch(part)
            engine.close()
        return got

    uninterrupted = await run([readings], None)
    restarted = await run([readings[:3], readings[3:6], readings[6:]], tmp_path / "rules.db")
    assert [(a.state, a.started_at, a.ts) for a in restarted] == [
        ("raised", T0, T0 + timedelta(minutes=10)),
        ("cleared", T0, T0 + timedelta(minutes=22)),
    ]
    assert restarted == uninterrupted


def message(readings, outbox=None):
    """The uplink message these readings came in (its topic's site and gateway, its bytes)."""
    from gateway.wire import encode_batch

    first = readings[0]
    return (first.site, first.gateway, encode_batch(readings, outbox=outbox))


def journal_rows(path):
    import sqlite3

    db = sqlite3.connect(path)
    try:
        return {
            table: db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
            for table in ("input_journal", "sensor_state")
        }
    finally:
        db.close()


async def test_a_restart_takes_journaled_messages_again_and_continues_the_hold(tmp_path):
    """Settling uplink messages journals them instead of writing every sensor they touched; a
    restart (here: a crash each time, no state written out) takes them again — the hold timer
    and the hysteresis continue where they were, no alarm is handed off twice, nothing is
    counted or quarantined twice — and the next tick writes the state out and empties the
    journal."""
    from gateway.config import MqttPoint, SensorConfig
    from stream.registry import Registry
    from stream.state import SqliteRuleState

    path = tmp_path / "rules.db"
    night = [(0, 4.5), (3, 4.4), (6, 4.4), (9, 4.3), (10, 4.3), (14, 6.0), (18, 6.5), (22, 7.5)]
    readings = [reading(m, v, seq=i + 1) for i, (m, v) in enumerate(night)]
    ghost = reading(11, 1.0, sensor="ghost", seq=50)  # not in the config: quarantined once
    t1 = SensorConfig(id="t1", site="s", gateway="g", source=MqttPoint(type="mqtt", topic="a"))
    got = []

    async def sink(alarms):
        got.extend(alarms)

    def engine():
        return EmbeddedEngine(
            table=RuleTable(DEFAULT_RULES, {}), clock=FixedClock(T0 + timedelta(minutes=30)),
            sink=sink, state=SqliteRuleState(path), registry=Registry({("s", "t1"): t1}),
        )  # fmt: skip

    quarantined = 0
    for part in (readings[:3], [*readings[3:6], ghost], readings[6:]):
        running = engine()
        assert dict(running.counts) == {}
        await running.process_batch(part, save=False, message=message(part, outbox="ob"))
        await running.settle()
        quarantined += running.quarantine.counts.get("unknown-sensor", 0)
        running.close()  # a crash: nothing written out but the journal
    assert journal_rows(path) == {"input_journal": 3, "sensor_state": 0}
    assert quarantined == 1
    assert [(a.state, a.started_at, a.ts) for a in got] == [
        ("raised", T0, T0 + timedelta(minutes=10)),
        ("cleared", T0, T0 + timedelta(minutes=22)),
    ]
    again = engine()
    assert len(got) == 2 and dict(again.counts) == {} and again.quarantine.counts == {}
    await again.tick()
    assert journal_rows(path) == {"input_journal": 0, "sensor_state": 1}
    again.close()
    restored = engine()
    assert restored.tracks == again.tracks
    await restored.process_batch(
        [reading(30, 4.0, seq=9)], message=message([reading(30, 4.0, seq=9)], outbox="ob")
    )
    assert [a.state for a in got] == ["raised", "cleared"], "the hold starts again at minute 30"
    restored.close()


async def test_settling_journals_or_writes_out_whichever_is_cheaper(tmp_path):
    """Messages whose readings are spread over many sensors are journaled (a fleet); a backlog
    of many readings of a few sensors writes the changed sensors out instead (cheaper than its
    bytes)."""
    path = tmp_path / "rules.db"
    engine = saving_engine(path, now=T0 + timedelta(hours=2))
    spread = [reading(0, 21.0, f"t{i}", seq=i + 1) for i in range(40)]
    await engine.process_batch(spread, save=False, message=message(spread))
    await engine.settle()
    assert journal_rows(path) == {"input_journal": 1, "sensor_state": 0}
    few = [reading(1 + i / 600, 21.0, f"t{i % 2}", seq=100 + i) for i in range(1000)]
    for start in range(0, len(few), 50):
        part = few[start : start + 50]
        await engine.process_batch(part, save=False, message=message(part))
    await engine.settle()
    assert journal_rows(path) == {"input_journal": 0, "sensor_state": 40}
    engine.close()
    restored = saving_engine(path)
    assert restored.tracks == engine.tracks
    restored.close()


async def test_a_full_journal_writes_the_state_out(tmp_path, monkeypatch):
    """The journal is bounded in readings and in bytes (a flood of padded messages): past
    either bound, settling writes the state out and empties the journal."""
    from stream import engine as engine_module

    path = tmp_path / "rules.db"
    running = saving_engine(path, now=T0 + timedelta(hours=2))

    def minute(m):  # 20 sensors, a reading each, in one message
        return [reading(m, 21.0, f"t{i}", seq=100 * m + i + 1) for i in range(20)]

    async def take(m):
        await running.process_batch(minute(m), save=False, message=message(minute(m)))
        await running.settle()
        return journal_rows(path)

    size = len(message(minute(1))[2])
    monkeypatch.setattr(engine_module, "JOURNAL_BYTES", 2 * size + size // 2)  # two fit, not three
    assert [await take(m) for m in (1, 2, 3)] == [
        {"input_journal": 1, "sensor_state": 0},
        {"input_journal": 2, "sensor_state": 0},
        {"input_journal": 0, "sensor_state": 20},
    ]
    monkeypatch.setattr(engine_module, "JOURNAL_BYTES", 10**9)
    monkeypatch.setattr(engine_module, "JOURNAL_READINGS", 30)  # one message fits, not two
    assert [await take(m) for m in (4, 5)] == [
        {"input_journal": 1, "sensor_state": 20},
        {"input_journal": 0, "sensor_state": 20},
    ]
    running.close()
    restored = saving_engine(path)
    assert restored.tracks == running.tracks
    restored.close()


async def test_a_damaged_journal_row_is_left_out_and_the_rest_taken_again(tmp_path, caplog):
    """Journal rows that cannot be read — bytes that are no message, nested too deep, too large,
    a lone surrogate, a reading of another gateway, a time no clock holds (year 1, past year
    9999, a float, text), text where bytes belong, a number where a site belongs — are logged
    and left out; the messages around them are taken again, and a frost still raises."""
    import sqlite3

    path = tmp_path / "rules.db"
    first, later = [reading(0, 4.0, seq=1)], [reading(4, 4.0, seq=2)]
    running = saving_engine(path, now=T0 + timedelta(minutes=30))
    for part in (first, later):
        await running.process_batch(part, save=False, message=message(part))
        await running.settle()
    running.close()
    good = message(first)[2]
    other = message([make_reading(1, -40.0, sensor="t1", seq=9, start=T0, gateway="x")])[2]
    db = sqlite3.connect(path, isolation_level=None)
    damaged = [
        (0, "s", "g", b"{not"),
        (0, "s", "g", b"[" * 100_000),
        (0, "s", "g", b'{"readings":[' + b" " * 17_000_000 + b"]}"),
        (0, "s", "g", rb'{"readings":[{"site":"\ud800"}]}'),
        (0, "s", "g", other),
        (-62_135_596_800_000_000, "s", "g", good),
        (2**62, "s", "g", good),
        (1.5, "s", "g", good),
        ("soon", "s", "g", good),
        (0, "s", "g", good.decode()),
        (0, 7, "g", good),
    ]
    for i, (now, site, gateway, payload) in enumerate(damaged):
        db.execute(
            "INSERT INTO input_journal (id, now, site, gateway, outbox, source, payload) "
            "VALUES (?, ?, ?, ?, NULL, 's/g', ?)",
            (-i if i % 2 else 100 + i, now, site, gateway, payload),
        )
    db.close()
    got = []

    async def sink(alarms):
        got.extend(alarms)

    from stream.state import SqliteRuleState

    again = EmbeddedEngine(
        table=RuleTable(DEFAULT_RULES, {}), clock=FixedClock(T0 + timedelta(minutes=30)),
        sink=sink, state=SqliteRuleState(path),
    )  # fmt: skip
    assert "a journaled message cannot be read" in caplog.text
    assert caplog.text.count("cannot be read") == 8  # the rest: readings the decoder refuses
    assert again.tracks[("s", "g")].sensors["t1"].last_seq == 2
    await again.process_batch([reading(10, 4.0, seq=3)])
    assert [(a.condition, a.state, a.started_at) for a in got] == [("freezing", "raised", T0)]
    again.close()


async def test_readings_sent_again_after_a_restart_are_duplicates(tmp_path):
    from stream.state import SqliteRuleState

    got = []

    async def sink(alarms):
        got.extend(alarms)

    batch = [reading(m, 3.0, seq=m + 1) for m in range(12)]
    for _ in range(2):  # the second time: a crash before the outbox acknowledged the batch
        engine = EmbeddedEngine(
            table=RuleTable(DEFAULT_RULES, {}),
            clock=FixedClock(T0 + timedelta(minutes=30)),
            sink=sink,
            state=SqliteRuleState(tmp_path / "rules.db"),
        )
        await engine.process_batch(batch)
        engine.close()
    assert [a.state for a in got] == ["raised"]
    assert engine.counts["duplicate"] == len(batch)


async def test_a_big_batch_yields_to_the_event_loop_while_it_is_evaluated():
    """Keepalives and other gateways are served while 30,000 readings are evaluated."""
    import asyncio

    from stream.engine import YIELD_EVERY

    async def sink(alarms):
        pass

    engine = EmbeddedEngine(
        table=RuleTable(DEFAULT_RULES, {}), clock=FixedClock(T0 + timedelta(days=1)), sink=sink
    )
    batch = [
        make_reading(i / 60_000, 20.0, sensor=f"t{i % 50}", seq=i + 1, start=T0)
        for i in range(30_000)
    ]
    turns = 0

    async def other_work():
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    other = asyncio.create_task(other_work())
    await asyncio.sleep(0)
    before = turns
    await engine.process_batch(batch)
    during = turns - before
    other.cancel()
    assert engine.counts["readings"] == len(batch)
    assert during >= len(batch) // YIELD_EVERY - 1


async def test_a_batch_saves_only_the_sensors_it_changed_and_a_restart_restores_them(tmp_path):
    """Saved per sensor, rate-of-rise samples appended to a log: a restart continues every
    sensor's state exactly, and a batch of one sensor writes one sensor."""
    from stream.state import SqliteRuleState

    async def sink(alarms):
        pass

    def engine(state):
        return EmbeddedEngine(
            table=RuleTable(DEFAULT_RULES, {}),
            clock=FixedClock(T0 + timedelta(hours=2)),
            sink=sink,
            state=state,
        )

    readings = [
        reading(m / 6, 20.0 + (m % 7) * 0.1, sensor=f"t{m % 5}", seq=m + 1) for m in range(300)
    ]
    path = tmp_path / "rules.db"
    first = engine(SqliteRuleState(path))
    for i in range(0, 300, 7):
        await first.process_batch(readings[i : i + 7])
    first.close()
    again = engine(SqliteRuleState(path))
    assert dict(again.tracks) == dict(first.tracks)
    import sqlite3

    from stream.state import EVICTED_CHUNKS

    db = sqlite3.connect(path)
    for (site, gateway), track in first.tracks.items():
        for sensor, kept in track.sensors.items():
            start = kept.states["heat-rise"].first()
            (gone,) = db.execute(
                "SELECT COUNT(*) FROM rise_chunks WHERE site = ? AND gateway = ? AND sensor = ? "
                "AND newest < ?",
                (site, gateway, sensor, start),
            ).fetchone()
            assert gone < EVICTED_CHUNKS  # what left the window leaves the log, a few at a time
    assert db.execute("SELECT COUNT(*) FROM rise_chunks").fetchone()[0] < 300  # not a row a reading
    db.close()


async def test_a_batchs_alarms_reach_the_sink_together_and_one_unrecordable_alarm_holds_none_back(
    tmp_path,
):
    """300 sensors read fire in one uplink batch: the store is asked in a few calls,
    not 300; when one alarm cannot be recorded, it alone is quarantined."""
    calls, recorded = [], []

    async def sink(alarms):
        calls.append(len(alarms))
        if any(a.sensor == "t13" for a in alarms):
            raise ValueError("this alarm cannot be stored")
        recorded.extend(a.sensor for a in alarms)

    quarantine = Quarantine(store=SqliteQuarantine(tmp_path / "q.db"))
    engine = EmbeddedEngine(
        table=RuleTable(DEFAULT_RULES, {}),
        clock=FixedClock(T0 + timedelta(minutes=1)),
        sink=sink,
        quarantine=quarantine,
    )
    await engine.process_batch([reading(0, 60.0, f"t{s}", seq=s) for s in range(300)])
    assert len(recorded) == 299
    assert "t13" not in recorded
    assert recorded == [f"t{s}" for s in range(300) if s != 13]  # in order
    assert quarantine.counts == {"alarm-unrecorded": 1}
    # the batch, split at the yield point; the failing part once together, then one by one
    # (the bad one three times); never one call per alarm for the part that is fine
    assert calls[0] == 256 and calls[-1] == 300 - 256
    assert calls.count(1) == 256 + 2


async def test_stopping_while_the_state_is_being_written_waits_for_the_write(tmp_path):
    """The engine stops (closes its state) while a save runs in its thread: the save finishes
    and is kept, rather than the connection closing under it (which crashed the process)."""
    import threading

    from stream.state import SqliteRuleState

    async def sink(alarms):
        pass

    state = SqliteRuleState(tmp_path / "rules.db")
    engine = EmbeddedEngine(
        table=RuleTable(DEFAULT_RULES, {}), clock=FixedClock(T0 + timedelta(hours=2)), sink=sink,
        state=state,
    )  # fmt: skip
    writing, closing = threading.Event(), threading.Event()
    write, close = state._write_open, state.close

    def slow_write(changes):
        writing.set()
        closing.wait()  # the write goes on only once the engine is stopping
        write(changes)

    def close_now():
        closing.set()
        close()

    state._write_open, state.close = slow_write, close_now
    save = asyncio.create_task(engine.process_batch([reading(0, 21.0, seq=1)]))
    await asyncio.to_thread(writing.wait)
    await asyncio.to_thread(engine.close)
    await save
    restored = SqliteRuleState(tmp_path / "rules.db")
    assert set(restored.load()) == {("s", "g")}
    restored.close()


async def test_a_state_write_that_fails_is_written_with_the_next_save(tmp_path):
    """The disk refuses one write (here a trigger, as a full disk would): the alarms went out,
    the changes stay pending, and the next save writes them."""
    import sqlite3

    import pytest

    path = tmp_path / "rules.db"
    engine = saving_engine(path)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute(
        "CREATE TRIGGER refuse BEFORE INSERT ON sensor_state BEGIN SELECT RAISE(ABORT, 'disk full'); END"
    )
    with pytest.raises(sqlite3.IntegrityError, match="disk full"):
        await engine.process_batch([reading(0, 21.0, "t1", seq=1)])
    other.execute("DROP TRIGGER refuse")
    other.close()
    await engine.settle()  # nothing new since: only what the failed write held
    engine.close()
    tracks = _restored(path)
    assert set(tracks[("s", "g")].sensors) == {"t1"}


def saving_engine(path, now=T0 + timedelta(hours=2)):
    """An engine saving its rule state to `path`, whose alarms go nowhere."""
    from stream.state import SqliteRuleState

    async def sink(alarms):
        pass

    return EmbeddedEngine(
        table=RuleTable(DEFAULT_RULES, {}), clock=FixedClock(now), sink=sink,
        state=SqliteRuleState(path),
    )  # fmt: skip


def _restored(path):
    from stream.state import SqliteRuleState

    state = SqliteRuleState(path)
    try:
        return state.load()
    finally:
        state.close()


async def test_a_state_of_the_older_one_row_a_sample_log_is_read_and_converted(tmp_path):
    """A rule state written by an older husvakt (the rate-of-rise log a row per sample) is read
    exactly, and its log rewritten as a row per state."""
    import sqlite3

    from stream.state import _unpack

    path = tmp_path / "rules.db"
    engine = saving_engine(path)
    for i in range(60):
        await engine.process_batch([reading(i / 4, 20 + i * 0.3, f"t{i % 3}", seq=i + 1)])
    engine.close()
    expected = dict(engine.tracks)
    db = sqlite3.connect(path, isolation_level=None)  # the older layout, by hand
    for site, gateway, sensor, rule, data in db.execute(
        "SELECT site, gateway, sensor, rule, data FROM rise_chunks ORDER BY rowid"
    ).fetchall():
        start = expected[(site, gateway)].sensors[sensor].states[rule].first()
        db.executemany(
            "INSERT INTO rise_samples VALUES (?, ?, ?, ?, ?, ?)",
            [(site, gateway, sensor, rule, us, v) for us, v in _unpack(data) if us >= start],
        )
    db.execute("DELETE FROM rise_chunks")
    assert _restored(path) == expected
    assert db.execute("SELECT COUNT(*) FROM rise_samples").fetchone() == (0,)
    assert db.execute("SELECT COUNT(*) FROM rise_chunks").fetchone() == (3,)
    db.close()
    assert _restored(path) == expected


def _steps():
    from hypothesis import strategies as st

    reading_step = st.tuples(
        st.just("reading"), st.integers(0, 2), st.sampled_from([0, 1, 10, 60, 130]),
        st.floats(-10, 90, allow_nan=False), st.booleans(),
    )  # fmt: skip
    other = st.sampled_from([("save",), ("restart",), ("reset",), ("write",)])
    return st.lists(reading_step | other, max_size=60)


async def _check_restores(steps):
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rules.db"

        def engine():
            return saving_engine(path, now=T0 + timedelta(days=2))

        running, t, seq = engine(), T0, 0
        for step in steps:
            if step[0] == "reading":
                _, sensor, gap, value, uplinked = step
                t += timedelta(seconds=gap)
                seq += 1
                r = make_reading(0, value, sensor=f"t{sensor}", seq=seq, start=t)
                # an uplink message is journaled by `settle`; a reading from this process not
                await running.process_batch(
                    [r], save=False, message=message([r]) if uplinked else None
                )
            elif step[0] == "save":
                await running.settle()
            elif step[0] == "write":  # what a tick or a status does
                await running.save()
                assert _restored(path) == dict(running.tracks)
            elif step[0] == "reset":  # a rule that failed starts again (`evaluate_sensor`)
                for key, track in running._tracks.items():
                    for sensor_id, kept in track.sensors.items():
                        if kept.states.pop("heat-rise", None) is not None:
                            track.changed.add(sensor_id)
                            running._dirty.add(key)
                # not from a message: a journal taken again would not fail the same way
                running._must_write = True
            else:
                await running.settle()
                running.close()
                before = dict(running.tracks)
                running = engine()
                assert dict(running.tracks) == before
        await running.settle()
        running.close()
        restarted = engine()
        restarted.close()
        assert restarted.tracks == running.tracks


def test_whatever_is_saved_is_restored_exactly():
    """Any readings (uplinked and journaled, or not), saves, writes, restarts and rule states
    starting again: a restart restores every sensor's state exactly — its rate-of-rise window
    to the sample — from the state written out and the journal taken again."""
    from hypothesis import given, settings

    @settings(max_examples=150, deadline=None)
    @given(_steps())
    def check(steps):
        asyncio.run(_check_restores(steps))

    check()


async def test_a_damaged_rule_state_file_starts_what_it_cannot_read_again(tmp_path, caplog):
    """A rule-state file is outside input: a sensor row that is not JSON, a gateway row that is
    not a state, log rows of garbage, NaN and far-future samples. The engine starts, says what
    it could not read, keeps what it could, and a genuine frost alarm still opens."""
    import sqlite3
    import struct

    path = tmp_path / "rules.db"
    first = saving_engine(path)
    for i in range(24):
        await first.process_batch([reading(i / 4, 20.0 + i * 0.1, f"t{i % 3}", seq=i + 1)])
        await first.process_batch([reading(i / 4, 21.0, "h1", seq=i + 1).model_copy(
            update={"gateway": "g2"})])  # fmt: skip
    first.close()
    kept = first.tracks[("s", "g")].sensors["t2"]
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("UPDATE sensor_state SET data = ? WHERE sensor = 't0'", (b"{not json",))
    db.execute("UPDATE gateway_state SET data = ? WHERE gateway = 'g2'", (b'{"v": 1}',))
    for bad in (b"\xff" * 40, struct.pack("<2q2d", 1, 2**62, float("nan"), float("inf"))):
        db.execute("INSERT INTO rise_chunks VALUES ('s', 'g', 't1', 'heat-rise', 0, 0, ?)", (bad,))
    db.close()
    alarms = []

    async def sink(batch):
        alarms.extend(batch)

    caplog.set_level("ERROR", logger="husvakt.stream.state")
    from stream.state import SqliteRuleState

    again = EmbeddedEngine(
        table=RuleTable(DEFAULT_RULES, {}), clock=FixedClock(T0 + timedelta(hours=2)), sink=sink,
        state=SqliteRuleState(path),
    )  # fmt: skip
    assert "s/g/t0" in caplog.text and "s/g2" in caplog.text
    assert again.tracks[("s", "g")].sensors["t2"] == kept  # what could be read is kept
    assert "t0" not in again.tracks[("s", "g")].sensors
    rise = again.tracks[("s", "g")].sensors["t1"].states["heat-rise"]
    assert all(0 <= us < 2**62 and math.isfinite(v) for us, v in rise.timed())
    for minute, seq in ((30, 500), (41, 502)):  # frost held past its ten minutes
        await again.process_batch(
            [reading(minute, 1.0, s, seq=seq + i) for i, s in enumerate(("t0", "t1"))]
        )
    assert {(a.sensor, a.condition) for a in alarms} >= {("t1", "freezing"), ("t0", "freezing")}
    again.close()
