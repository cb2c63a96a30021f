"""The gateway's hand-over from its sources to the outbox writer: bounded, ordered, joined."""

import asyncio
from datetime import UTC, datetime

from gateway.models import Reading
from gateway.service import Pending

T0 = datetime(2026, 1, 15, 2, 0, tzinfo=UTC)


def waiting(n, start=0):
    return [
        (Reading.trusted("s", "g", f"t{i}", "temperature", 1.0, "°C", T0, 0), None)
        for i in range(start, start + n)
    ]


def sensors(batch):
    return [reading.sensor for reading, _ in batch]


async def test_a_full_hand_over_holds_the_source_back_until_the_writer_takes_some():
    pending = Pending(room=3)
    await pending.put_all(waiting(3))  # full now
    blocked = asyncio.create_task(pending.put_all(waiting(2, start=3)))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert not blocked.done()  # back-pressure: it waits, nothing is dropped
    assert sensors(await pending.take(2)) == ["t0", "t1"]
    await asyncio.wait_for(blocked, 1)
    assert sensors(await pending.take(10)) == ["t2", "t3", "t4"]  # in order, whole runs


async def test_join_waits_until_every_reading_taken_is_done():
    pending = Pending(room=10)
    await pending.join()  # nothing put: at once
    await pending.put_all(waiting(4))
    joined = asyncio.create_task(pending.join())
    batch = await pending.take(3)
    pending.done(len(batch))
    await asyncio.sleep(0)
    assert not joined.done()  # one still waits
    pending.done(len(await pending.take(3)))
    await asyncio.wait_for(joined, 1)


async def test_the_writer_waits_for_the_first_reading():
    pending = Pending(room=10)
    taking = asyncio.create_task(pending.take(5))
    await asyncio.sleep(0)
    assert not taking.done()
    await pending.put_all(waiting(1))
    assert sensors(await asyncio.wait_for(taking, 1)) == ["t0"]
