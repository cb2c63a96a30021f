"""The durable outbox: every reading is on disk before anyone is told it was taken, and leaves
only after the uplink confirmed it.

SQLite in WAL mode, one connection used from a worker thread. Syncing is grouped (an SD card
wears with every sync): commits are not synced one by one (`synchronous=NORMAL`); at most every
`sync_every` seconds one call syncs the journal (the WAL) with what was committed since. A
crash of the process loses nothing committed (it is in the operating system's hands); a power
cut can lose what was
committed since the last sync — at most `sync_every` seconds of readings (1 s by default;
`sync_every: 0` syncs every commit). The
outbox numbers readings as it commits them (`seq`, per gateway, gap-free across restarts), so a
receiver that sees every `seq` from 1 to the last knows nothing committed was lost. Each
outbox has a random `id`, sent with every batch: a receiver that sees a new id knows the
numbering starts again (the gateway got a new outbox), and no forged seq outlives it.

When the payload held exceeds `max_bytes` the oldest quarter is thinned rather than dropped:
per sensor and `thin_window`, the lowest and highest good reading and every fault reading stay,
so a buffered freezing or fire episode survives any outage. What was thinned is counted.

When the disk is full (or a quota is reached) a commit fails; the outbox then frees the space
it kept in reserve (a file of `RESERVE` bytes beside it, so that thinning, which writes too,
has room), gives back its journal's space, thins harder (its budget becomes three quarters of
what it holds), says so (`no_room`) and tries again. Each commit that succeeds grows the budget by a
hundredth again, while the file has free pages or the disk has room for a journal's worth more
(`HEADROOM`); once it is back at what the config says, the outbox says there is room.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import secrets
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from gateway.config import OutboxConfig
from gateway.models import Reading
from gateway.secrets import private_file
from gateway.wire import encode_fields

log = logging.getLogger("husvakt.gateway.outbox")
_T = TypeVar("_T")

__all__ = ["RESERVE", "Held", "NoRoomError", "OutboxStats", "SqliteOutbox"]

#: Bytes kept in reserve beside the outbox, freed when the disk is full so that thinning and
#: checkpointing have room to write.
RESERVE = 2_000_000
#: The journal (WAL) is checkpointed at this many pages (of 4 KiB) and kept no bigger.
WAL_PAGES = 128
#: The room an outbox that filled its disk wants before it holds more again: what a
#: checkpoint of a full journal may add to its file.
HEADROOM = WAL_PAGES * 4096

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    sensor TEXT NOT NULL,
    epoch REAL NOT NULL,
    value REAL NOT NULL,
    fault INTEGER NOT NULL,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta VALUES ('last_seq', 0), ('thinned', 0);
CREATE TABLE IF NOT EXISTS identity (id TEXT NOT NULL);
"""
#: made when a sample is first held (an outbox whose clock is always synced never has it)
_HELD_SCHEMA = """
CREATE TABLE IF NOT EXISTS held (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    boot TEXT NOT NULL,
    mono REAL NOT NULL,
    sample TEXT NOT NULL
)
"""

#: a sample held until the clock syncs: (row id, boot id, monotonic time taken, sample JSON)
Held = tuple[int, str, float, str]


def _float_or_nan(value: object) -> float:
    """A stored number as a float; NaN when a damaged file holds something else there."""
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return float("nan")


@dataclass(frozen=True)
class OutboxStats:
    buffered: int
    bytes: int
    thinned: int
    last_seq: int
    #: the disk (or a quota) is full: the outbox thins harder until there is room again
    no_room: bool = False
    syncs: int = 0


class NoRoomError(OSError):
    """The disk, a quota or a file-size limit leaves the outbox no room for a commit."""


def _no_room(exc: BaseException) -> bool:
    if isinstance(exc, sqlite3.Error):
        name = getattr(exc, "sqlite_errorname", "")
        return name in ("SQLITE_FULL", "SQLITE_IOERR_WRITE", "SQLITE_IOERR_FSYNC") or (
            "disk is full" in str(exc) or "disk I/O error" in str(exc)
        )
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


class SqliteOutbox:
    """A bounded, durable FIFO of readings."""

    def __init__(
        self,
        path: Path,
        *,
        max_bytes: int = 50_000_000,
        thin_window: float = 600.0,
        sync_every: float = 0.0,
    ) -> None:
        self.path = path
        self._max_bytes = max_bytes
        self._budget = max_bytes  # lower while the disk is full
        self._thin_window = thin_window
        self._sync_every = sync_every
        self._last_sync = 0.0
        self._unsynced = False
        self._sync_task: asyncio.Task[None] | None = None
        self.syncs = 0
        self.no_room = False
        self._short = False  # too little room on the disk for the outbox's file to grow
        self._db: sqlite3.Connection | None = None
        self._lock = asyncio.Lock()
        self._buffered = 0
        self._bytes = 0
        self._thinned = 0
        self._last_seq = 0
        self.id = ""
        #: samples held until the clock syncs (`hold`)
        self.held = 0
        self.appended = asyncio.Event()
        self.emptied = asyncio.Event()

    @classmethod
    def of(cls, config: OutboxConfig) -> SqliteOutbox:
        """The outbox a gateway's config describes (not opened yet)."""
        return cls(
            config.path,
            max_bytes=int(config.max_mb * 1e6),
            thin_window=config.thin_window,
            sync_every=config.sync_every,
        )

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(self._open)

    def _open(self) -> None:
        private_file(self.path)  # readings: for the owner only
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        # a small journal: a full disk must never be a journal that cannot be checkpointed
        db.execute(f"PRAGMA wal_autocheckpoint={WAL_PAGES}")
        db.execute(f"PRAGMA journal_size_limit={WAL_PAGES * 4096}")
        db.execute(
            "PRAGMA synchronous=NORMAL" if self._sync_every > 0 else "PRAGMA synchronous=FULL"
        )
        db.executescript(_SCHEMA)
        self._buffered, self._bytes = db.execute(
            "SELECT COUNT(*), COALESCE(SUM(LENGTH(body)), 0) FROM outbox"
        ).fetchone()
        if db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'held'"
        ).fetchone():
            (self.held,) = db.execute("SELECT COUNT(*) FROM held").fetchone()
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        self._last_seq, self._thinned = int(meta["last_seq"]), int(meta["thinned"])
        row = db.execute("SELECT id FROM identity").fetchone()
        if row is None:
            row = (f"ob-{secrets.token_hex(8)}",)
            db.execute("INSERT INTO identity VALUES (?)", row)
        self.id = str(row[0])
        if self._buffered == 0:
            self.emptied.set()
        self._db = db
        self._keep_reserve()

    @property
    def _reserve(self) -> Path:
        return self.path.with_name(self.path.name + ".reserve")

    def _room_to_grow(self) -> bool:
        """Whether the outbox may hold more after the disk was full: its file has free pages
        for it, or the disk has room for the file to grow by a full journal and more. An outbox
        that grew into the disk's last bytes could not even checkpoint its journal (which may
        make the file longer), nor write the thinning that would make room: every commit
        would fail until someone freed space."""
        with contextlib.suppress(OSError):
            if self._reserve.stat().st_size >= HEADROOM:
                return True  # the room it frees when the disk fills
        db = self._conn()
        (free,) = db.execute("PRAGMA freelist_count").fetchone()
        (page,) = db.execute("PRAGMA page_size").fetchone()
        disk = os.statvfs(self.path.parent)
        return max(int(free) * int(page), disk.f_bavail * disk.f_frsize) >= HEADROOM

    def _keep_reserve(self) -> bool:
        """Hold `RESERVE` bytes of the disk beside the outbox; False when there is no room
        for them (then it comes back later)."""
        size = min(RESERVE, max(self._max_bytes // 10, 4096))
        try:
            if self._reserve.exists() and self._reserve.stat().st_size >= size:
                return True
            fd = os.open(self._reserve, os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                os.posix_fallocate(fd, 0, size)
            finally:
                os.close(fd)
        except OSError:
            self._reserve.unlink(missing_ok=True)
            return False
        return True

    async def close(self) -> None:
        if self._sync_task is not None:
            self._sync_task.cancel()
        async with self._lock:
            if self._db is not None:
                db, self._db = self._db, None
                if self._unsynced:
                    await asyncio.to_thread(self._sync_now, db)
                await asyncio.to_thread(db.close)

    @property
    def stats(self) -> OutboxStats:
        return OutboxStats(
            self._buffered, self._bytes, self._thinned, self._last_seq, self.no_room, self.syncs
        )

    # --- grouped syncs ---------------------------------------------------------------------

    def _sync_now(self, db: sqlite3.Connection) -> None:
        """Sync what was committed: the journal (WAL) to the disk, in one call. SQLite replays
        a journal's whole frames after a power cut; its own checkpoints sync themselves."""
        wal = self.path.with_name(self.path.name + "-wal")
        self._unsynced = False
        self._last_sync = time.monotonic()
        try:
            fd = os.open(wal, os.O_RDONLY)
        except FileNotFoundError:
            return  # checkpointed away: the database itself holds everything
        try:
            os.fdatasync(fd)
        finally:
            os.close(fd)
        self.syncs += 1

    def _committed(self) -> None:
        """A commit happened: sync now if the last sync is `sync_every` ago, else soon."""
        if self._sync_every <= 0:
            self.syncs += 1  # synchronous=FULL: the commit itself synced
            return
        self._unsynced = True
        if self._sync_task is None or self._sync_task.done():
            self._sync_task = asyncio.get_running_loop().create_task(self._sync_later())

    async def _sync_later(self) -> None:
        wait = self._sync_every - (time.monotonic() - self._last_sync)
        if wait > 0:
            await asyncio.sleep(wait)
        async with self._lock:
            if self._db is not None and self._unsynced:
                await asyncio.to_thread(self._sync_now, self._db)

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("the outbox is not open")
        return self._db

    async def append(self, readings: Sequence[Reading], *, unhold: Sequence[int] = ()) -> range:
        """Number and store readings in one transaction; returns the numbers given (`seq`, in
        order). When this returns, they survive a crash or power cut. The held samples
        `unhold` (these readings, now with their true time) leave in the same transaction."""
        if not readings and not unhold:
            return range(0)
        stored = await self._write(lambda: self._append(readings, unhold))
        if readings:
            self.appended.set()
        return stored

    async def _write(self, work: Callable[[], _T]) -> _T:
        """Run one writing transaction (`work`, in the worker thread). When the disk is full
        the outbox makes room and tries once more; NoRoomError when there is still none."""

        def work_and_room() -> tuple[_T, bool]:
            return work(), self._room_to_grow()

        async with self._lock:
            try:
                done, room = await asyncio.to_thread(work_and_room)
            except (sqlite3.Error, OSError) as exc:
                if not _no_room(exc):
                    raise
                try:  # make room, and once more in the room made
                    await asyncio.to_thread(self._make_room)
                    done, room = await asyncio.to_thread(work_and_room)
                except (sqlite3.Error, OSError) as again:
                    if _no_room(again):
                        raise NoRoomError(
                            errno.ENOSPC, f"no room for the outbox: {again}"
                        ) from again
                    raise
            if not room:  # the disk is nearly full: hold no more than then, thin from there
                if not self._short:
                    self._budget = max(1, min(self._budget, self._bytes))
                self._short = self.no_room = True
            elif self.no_room:  # room again: grow back by a hundredth a commit
                self._short = False
                self._budget = min(self._max_bytes, int(self._budget * 1.01) + 1)
                self.no_room = self._budget < self._max_bytes
                if not self.no_room:
                    await asyncio.to_thread(self._keep_reserve)
            if self._bytes > self._budget:
                await asyncio.to_thread(self._thin_after)
            self._committed()
        return done

    def _thin_after(self) -> None:
        """Thin after a commit. What was committed stays committed whatever happens here: a
        failure must not make the caller think its readings were not stored (it would store
        them twice)."""
        try:
            self._thin()
        except (sqlite3.Error, OSError) as exc:
            if not _no_room(exc):
                log.exception("thinning the outbox failed; it is tried again at the next commit")
                return
            try:
                self._make_room()
            except (sqlite3.Error, OSError) as again:
                log.error("the disk is full and the outbox cannot thin yet: %s", again)  # noqa: TRY400 - the disk, said in one line

    # --- samples held until the clock syncs ----------------------------------------------

    async def hold(self, rows: Sequence[tuple[str, float, str]], *, keep: int) -> int:
        """Keep samples taken before the clock synced — (boot id, monotonic time, the sample
        as JSON) — until they get their true time, as durably as an append; at most `keep`,
        the oldest going first. Returns how many old ones went."""
        return await self._write(lambda: self._hold(rows, keep))

    def _hold(self, rows: Sequence[tuple[str, float, str]], keep: int) -> int:
        db = self._conn()
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute(_HELD_SCHEMA)
            db.executemany("INSERT INTO held (boot, mono, sample) VALUES (?,?,?)", rows)
            over = max(0, self.held + len(rows) - keep)
            if over:
                db.execute(
                    "DELETE FROM held WHERE id IN (SELECT id FROM held ORDER BY id LIMIT ?)",
                    (over,),
                )
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:  # a failed COMMIT has rolled back already
                db.execute("ROLLBACK")
            raise
        self.held += len(rows) - over
        return over

    async def held_samples(self, limit: int) -> list[Held]:
        """The oldest `limit` held samples, in the order they were taken."""
        if not self.held:
            return []
        async with self._lock:
            rows = await asyncio.to_thread(
                lambda: (
                    self._conn()
                    .execute(
                        "SELECT id, boot, mono, sample FROM held ORDER BY id LIMIT ?", (limit,)
                    )
                    .fetchall()
                )
            )
        return [(int(i), str(b), _float_or_nan(m), str(t)) for i, b, m, t in rows]

    def _make_room(self) -> None:
        """The disk is full: give the journal's space back, and thin to three quarters of
        what is held."""
        self.no_room = True
        self._reserve.unlink(missing_ok=True)  # the room thinning needs to write
        db = self._conn()
        if db.in_transaction:
            db.execute("ROLLBACK")
        with contextlib.suppress(sqlite3.Error):  # a reader holds it: thinning frees pages anyway
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self._budget = max(1, min(self._budget, int(self._bytes * 0.75)))
        self._thin()

    def _append(self, readings: Sequence[Reading], unhold: Sequence[int] = ()) -> range:
        db = self._conn()
        numbers = range(self._last_seq + 1, self._last_seq + 1 + len(readings))
        rows, size = [], 0
        for seq, reading in zip(numbers, readings, strict=True):
            fields = reading.__dict__  # read from its dict: a model's attribute is slow
            epoch = fields["ts"].timestamp()
            body = encode_fields(fields, seq, epoch)
            rows.append(
                (fields["sensor"], epoch, fields["value"], fields["quality"] == "fault", body)
            )
            size += len(body)
        unheld = 0
        db.execute("BEGIN IMMEDIATE")
        try:
            if rows:
                db.executemany(
                    "INSERT INTO outbox (sensor, epoch, value, fault, body) VALUES (?,?,?,?,?)",
                    rows,
                )
                db.execute("UPDATE meta SET value = ? WHERE key = 'last_seq'", (numbers[-1],))
            if unhold:
                unheld = db.execute(
                    "DELETE FROM held WHERE id IN (SELECT value FROM json_each(?))",
                    (json.dumps(list(unhold)),),
                ).rowcount
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:  # a failed COMMIT has rolled back already
                db.execute("ROLLBACK")
            raise
        self.held -= unheld
        if rows:
            self._last_seq = numbers[-1]
            self.emptied.clear()
            self._buffered += len(rows)
            self._bytes += size
        return numbers

    async def peek(self, limit: int) -> list[tuple[int, str]]:
        """The oldest `limit` entries as (id, JSON body), in the order they were appended."""
        async with self._lock:
            return await asyncio.to_thread(
                lambda: (
                    self._conn()
                    .execute("SELECT id, body FROM outbox ORDER BY id LIMIT ?", (limit,))
                    .fetchall()
                )
            )

    async def last_id(self) -> int:
        """The id of the newest entry held (0 when empty)."""
        async with self._lock:
            row = await asyncio.to_thread(
                lambda: self._conn().execute("SELECT MAX(id) FROM outbox").fetchone()
            )
        return int(row[0] or 0)

    async def oldest(self) -> float | None:
        """When the oldest reading still held was measured (seconds since the epoch)."""
        async with self._lock:
            row = await asyncio.to_thread(
                lambda: (
                    self._conn().execute("SELECT epoch FROM outbox ORDER BY id LIMIT 1").fetchone()
                )
            )
        return None if row is None else float(row[0])

    async def ack(self, ids: Sequence[int]) -> None:
        """The uplink confirmed these: remove them."""
        if not ids:
            return
        async with self._lock:
            await asyncio.to_thread(self._ack, ids)

    def _ack(self, ids: Sequence[int]) -> None:
        db = self._conn()
        wanted = json.dumps(list(ids))
        db.execute("BEGIN IMMEDIATE")
        try:
            (size,) = db.execute(
                "SELECT COALESCE(SUM(LENGTH(body)), 0) FROM outbox "
                "WHERE id IN (SELECT value FROM json_each(?))",
                (wanted,),
            ).fetchone()
            gone = db.execute(
                "DELETE FROM outbox WHERE id IN (SELECT value FROM json_each(?))", (wanted,)
            ).rowcount
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:  # a failed COMMIT has rolled back already
                db.execute("ROLLBACK")
            raise
        self._buffered -= gone
        self._bytes -= size
        if self._buffered == 0:
            self.emptied.set()

    def _thin(self) -> None:
        """Thin the oldest quarter until under the budget, with ever coarser windows: a
        backlog of weeks keeps each sensor's extremes per hour, then per few hours, and so
        on."""
        window = self._thin_window
        while self._bytes > self._budget and window <= 86400.0 * 64:
            self._thin_pass(window)
            window *= 4

    def _thin_pass(self, window: float) -> None:
        """Keep per (sensor, window) of the oldest quarter the min, the max and the faults."""
        db = self._conn()
        count = max(1, self._buffered // 4)
        db.execute("BEGIN IMMEDIATE")
        try:
            (last_id,) = db.execute(
                "SELECT MAX(id) FROM (SELECT id FROM outbox ORDER BY id LIMIT ?)", (count,)
            ).fetchone()
            rows = db.execute(
                "SELECT id, sensor, epoch, value, fault, LENGTH(body) FROM outbox WHERE id <= ?",
                (last_id,),
            ).fetchall()
            keep: set[int] = set()
            extremes: dict[tuple[str, int], tuple[tuple[float, int], tuple[float, int]]] = {}
            for row_id, sensor, epoch, value, fault, _ in rows:
                if fault:
                    keep.add(row_id)
                    continue
                key = (sensor, int(epoch // window))
                low, high = extremes.get(key, ((value, row_id), (value, row_id)))
                extremes[key] = (min(low, (value, row_id)), max(high, (value, row_id)))
            for low, high in extremes.values():
                keep.update((low[1], high[1]))
            drop = [(r[0],) for r in rows if r[0] not in keep]
            db.executemany("DELETE FROM outbox WHERE id = ?", drop)
            db.execute("UPDATE meta SET value = value + ? WHERE key = 'thinned'", (len(drop),))
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:  # a failed COMMIT has rolled back already
                db.execute("ROLLBACK")
            raise
        dropped = {r[0] for r in drop}
        self._bytes -= sum(r[5] for r in rows if r[0] in dropped)
        self._buffered -= len(drop)
        self._thinned += len(drop)
