from datetime import timedelta

import pytest

from gateway.models import Reading
from gateway.outbox import SqliteOutbox
from tests.factories import T0, make_reading


@pytest.fixture
async def outbox(tmp_path):
    box = SqliteOutbox(tmp_path / "outbox.db", max_bytes=10_000_000)
    await box.open()
    yield box
    await box.close()


def seqs(rows):
    return [Reading.model_validate_json(body).seq for _, body in rows]


async def test_readings_are_numbered_as_they_are_committed_and_kept_in_order(outbox):
    stored = await outbox.append([make_reading(i, 20.0 + i) for i in range(5)])
    assert list(stored) == [1, 2, 3, 4, 5]
    rows = await outbox.peek(3)
    assert seqs(rows) == [1, 2, 3]
    await outbox.ack([row_id for row_id, _ in rows])
    assert seqs(await outbox.peek(10)) == [4, 5]
    assert outbox.stats.buffered == 2


async def test_the_outbox_and_its_numbering_survive_a_restart(tmp_path):
    path = tmp_path / "outbox.db"
    box = SqliteOutbox(path)
    await box.open()
    await box.append([make_reading(0, 1.0), make_reading(1, 2.0)])
    await box.ack([row_id for row_id, _ in await box.peek(1)])
    await box.close()
    again = SqliteOutbox(path)
    await again.open()
    assert seqs(await again.peek(10)) == [2]
    assert list(await again.append([make_reading(2, 3.0)])) == [3]
    assert again.stats.buffered == 2 and not again.emptied.is_set()
    await again.ack([row_id for row_id, _ in await again.peek(10)])
    assert again.emptied.is_set()
    await again.close()


async def test_a_full_outbox_thins_the_oldest_but_keeps_extremes_and_faults(tmp_path):
    box = SqliteOutbox(tmp_path / "outbox.db", max_bytes=60_000, thin_window=600)
    await box.open()
    # Eight hours of a basement at one reading a minute: cooling to 2.1 °C at 03:00, one
    # DS18B20 power-on-reset fault at 01:00, then recovering.
    readings = []
    for minute in range(8 * 60):
        value = 8.0 - 5.9 * (1 - abs(minute - 180) / 180) if minute < 360 else 8.0
        fault = "ds18b20-power-on-reset" if minute == 60 else None
        readings.append(
            make_reading(minute, 85.0 if fault else round(value, 3), fault=fault, start=T0)
        )
    for chunk in range(0, len(readings), 40):
        await box.append(readings[chunk : chunk + 40])
    kept = [Reading.model_validate_json(body) for _, body in await box.peek(10_000)]
    stats = box.stats
    assert stats.bytes <= 60_000
    assert stats.thinned > 0
    assert stats.thinned + stats.buffered == len(readings)
    assert any(r.fault == "ds18b20-power-on-reset" for r in kept)
    assert min(r.value for r in kept if r.quality == "good") == pytest.approx(2.1, abs=0.05)
    assert [r.seq for r in kept] == sorted(r.seq for r in kept)  # still in order
    # every ten-minute window still has its low and its high
    windows = {int((r.ts - T0) / timedelta(minutes=10)) for r in kept}
    assert len(windows) == 8 * 6
    await box.close()


async def test_nothing_to_append_changes_nothing(outbox):
    assert list(await outbox.append([])) == []
    assert outbox.stats.last_seq == 0


async def test_held_samples_keep_the_newest_survive_a_restart_and_leave_with_their_readings(
    tmp_path,
):
    path = tmp_path / "outbox.db"
    box = SqliteOutbox(path)
    await box.open()
    assert await box.held_samples(10) == []  # nothing held: no table made
    rows = [("boot", float(i), f'["t1", {i}, null, false]') for i in range(5)]
    assert await box.hold(rows[:3], keep=4) == 0
    assert await box.hold(rows[3:], keep=4) == 1  # the oldest goes, and is counted
    await box.close()

    box = SqliteOutbox(path)
    await box.open()
    held = await box.held_samples(10)
    assert box.held == 4 and [mono for _, _, mono, _ in held] == [1.0, 2.0, 3.0, 4.0]
    # moved into the outbox in one transaction: the readings in, the held rows out
    assert await box.append([make_reading(0, 3.0)], unhold=[held[0][0], held[1][0]]) == range(1, 2)
    assert box.held == 2 and [h[2] for h in await box.held_samples(10)] == [3.0, 4.0]
    assert await box.append([], unhold=[held[2][0]]) == range(0)  # unheld alone
    assert box.held == 1 and box.stats.buffered == 1
    await box.close()
