"""The outbox on a Raspberry Pi's SD card: syncs grouped to about one a second (counted in
the kernel's own system calls with strace), and a disk that really fills (a file-size limit on
the process) costs thinning, never the gateway — which recovers by itself when there is room
again."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from gateway.wire import Status, decode_status, encode_status
from tests.conftest import require_binary
from tests.factories import T0

#: The Pi load of the issue: 50 sensors every 10 s = 5 readings a second, here for 3 s (as
#: the gateway commits them: a commit per reading, the worst case for the card).
APPENDS = """
import asyncio, sys, time
from datetime import timedelta
from pathlib import Path
from gateway.outbox import SqliteOutbox
from tests.factories import make_reading

async def main(path, sync_every, count, every):
    outbox = SqliteOutbox(Path(path), sync_every=sync_every)
    await outbox.open()
    for i in range(count):
        await outbox.append([make_reading(i, 20.0 + i % 7)])
        await asyncio.sleep(every)
    syncs = outbox.stats.syncs
    await outbox.close()
    print(syncs)

asyncio.run(main(sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])))
"""


def syscalls(tmp_path, sync_every, count=15):
    strace = require_binary("strace")
    out = subprocess.run(
        [strace, "-f", "-qq", "-c", "-e", "trace=fsync,fdatasync", "-o", str(tmp_path / "s.txt"),
         sys.executable, "-c", APPENDS, str(tmp_path / f"ob-{sync_every}-{count}.db"),
         str(sync_every), str(count), "0.2"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    calls = 0
    for line in (tmp_path / "s.txt").read_text().splitlines():
        parts = line.split()
        if parts and parts[-1] in ("fsync", "fdatasync"):
            calls += int(parts[3])
    return calls, int(out.stdout.strip())


def test_an_sd_card_sees_about_one_sync_a_second_at_the_pi_load(tmp_path):
    opening, _ = syscalls(tmp_path, 1.0, count=1)  # opening and closing the outbox
    grouped, syncs = syscalls(tmp_path, 1.0)
    each, commits = syscalls(tmp_path, 0.0)
    # 15 commits over 3 s: a sync per commit costs a call each; grouped, one a second
    assert commits == 15 and each - opening >= 15
    assert syncs <= 4 and grouped - opening <= syncs + 1


DISK_FULL = """
import asyncio, json, sys
from pathlib import Path
from gateway.outbox import NoRoomError, SqliteOutbox
from tests.factories import make_reading

async def main(path, phase, start, count):
    outbox = SqliteOutbox(Path(path), max_bytes=50_000_000, sync_every=1.0)
    await outbox.open()
    stored, failed = 0, 0
    for i in range(start, start + count):
        try:
            await outbox.append([make_reading(i / 6, 20.0 + (i % 50) / 10, sensor=f"t{i % 5}")])
            stored += 1
        except NoRoomError:
            failed += 1
    stats = outbox.stats
    await outbox.close()
    print(json.dumps({"stored": stored, "failed": failed, "stats": stats.__dict__}))

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
"""


def fill(path, phase, start, count):
    out = subprocess.run(
        [sys.executable, "-c", DISK_FULL, str(path), phase, str(start), str(count)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture
def small_disk(tmp_path):
    """A real 3 MB filesystem (tmpfs) that fills; made bigger again on request."""
    where = tmp_path / "small"
    where.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(where)],
                             capture_output=True, text=True, check=False)  # fmt: skip
    if mounted.returncode != 0:
        pytest.fail(f"cannot mount a small filesystem for the disk-full test: {mounted.stderr}")

    def grow(size):
        subprocess.run(["mount", "-o", f"remount,size={size}", str(where)], check=True)

    try:
        yield where, grow
    finally:
        subprocess.run(["umount", str(where)], check=False)


def test_a_full_disk_thins_harder_reports_it_and_recovers_by_itself(small_disk):
    where, grow = small_disk
    path = where / "outbox.db"
    full = fill(path, "full", 0, 30000)
    # the disk filled long before the outbox's 50 MB budget: every reading was still taken,
    # the outbox made room by thinning harder, and says the disk is full
    assert full["failed"] == 0 and full["stored"] == 30000, full
    stats = full["stats"]
    assert stats["no_room"] is True and stats["thinned"] > 0
    assert stats["buffered"] + stats["thinned"] == 30000
    grow("64m")  # room again: commits succeed, the budget grows back, and it says so
    after = fill(path, "after", 30000, 400)
    assert after["failed"] == 0 and after["stats"]["no_room"] is False, after
    assert after["stats"]["last_seq"] == 30400


def test_an_outbox_that_fills_its_disk_again_and_again_never_stops_taking_readings(small_disk):
    # Twice what the first fill takes: the outbox fills the disk, thins, grows back into the
    # room it made, and fills it again. It must never grow into the disk's last bytes, where
    # not even a checkpoint or the thinning that makes room can write (then every commit
    # failed: 9,019 of these 60,000 did, before).
    where, _ = small_disk
    full = fill(where / "outbox.db", "again", 0, 60000)
    assert full["failed"] == 0 and full["stored"] == 60000, full
    stats = full["stats"]
    assert stats["last_seq"] == 60000  # each stored once: none reported failed after its commit
    assert stats["buffered"] + stats["thinned"] == 60000
    assert stats["buffered"] > 2000, stats  # thinned to what fits, not to nothing


def test_the_gateway_status_says_its_disk_is_full_and_only_then():
    full = Status(online=True, ts=T0, buffered=10, thinned=5, dropped=0, lag=1.0, no_room=True)
    assert decode_status(encode_status(full)).no_room is True
    fine = encode_status(Status(online=True, ts=T0, buffered=1))
    assert b"no_room" not in fine and decode_status(fine).no_room is False
    with pytest.raises(ValueError, match="no_room is not true or false"):
        decode_status(b'{"state": "online", "ts": "2026-01-15T02:00:00Z", "no_room": "yes"}')
