"""Rule state that survives a restart (embedded engine), in SQLite, saved in proportion to
what changed.

The engine saves what a batch changed after the batch's alarms were handed to the case bridge
and before the batch leaves the outbox. A crash in between re-evaluates the batch from the last
saved state: the same alarms again, which the case bridge recognises by their episode.

Layout: a row per gateway (its own fields), a row per sensor (its rule states), and a log of
rate-of-rise samples: per save, one row for each rate-of-rise state that took samples, holding
those samples (exact: µs and IEEE doubles, little-endian) and where the state's window began.
A batch that touched two sensors writes two sensor rows and two sample rows — not every sensor
of the gateway with every sample of its window, which is what made a busy server fall behind,
nor a row per reading. Rows whose samples have all left their window are deleted a few at a
time; reading the log back keeps only the samples from the newest row's window start on.

Between those writes, `husvakt stream` journals the uplink messages it took instead (`journal`:
the message as it arrived, when it was taken, its topic's gateway): a fleet's batch touches a
sensor per reading, and writing each of them out was most of a busy server's time. A restart
loads the rows and takes the journaled messages again, in order, at the time they were first
taken — the rules are a function of state, reading and time, so the state is what it was. Ticks
(every `tick_every`) and a journal of `JOURNAL_READINGS` write the rows out and empty it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import sqlite3
import struct
import threading
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from gateway.secrets import private_file
from stream.core import (
    GatewayTrack,
    decode_sensor,
    decode_track,
    encode_sensor,
    encode_track,
)
from stream.errors import StreamError
from stream.rules import RiseState

__all__ = ["JournalEntry", "SqliteRuleState", "gateway_contacts"]

log = logging.getLogger("husvakt.stream.state")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS gateway_state (
    site TEXT NOT NULL,
    gateway TEXT NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (site, gateway)
);
CREATE TABLE IF NOT EXISTS sensor_state (
    site TEXT NOT NULL,
    gateway TEXT NOT NULL,
    sensor TEXT NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (site, gateway, sensor)
);
CREATE TABLE IF NOT EXISTS rise_samples (
    site TEXT NOT NULL,
    gateway TEXT NOT NULL,
    sensor TEXT NOT NULL,
    rule TEXT NOT NULL,
    ts INTEGER NOT NULL,
    value REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS rise_samples_by_sensor ON rise_samples (site, gateway, sensor, rule, ts);
CREATE TABLE IF NOT EXISTS rise_chunks (
    site TEXT NOT NULL,
    gateway TEXT NOT NULL,
    sensor TEXT NOT NULL,
    rule TEXT NOT NULL,
    first INTEGER NOT NULL,
    newest INTEGER NOT NULL,
    data BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS rise_chunks_by_sensor
    ON rise_chunks (site, gateway, sensor, rule, newest);
CREATE TABLE IF NOT EXISTS input_journal (
    id INTEGER PRIMARY KEY,
    now INTEGER NOT NULL,
    site TEXT NOT NULL,
    gateway TEXT NOT NULL,
    outbox TEXT,
    source TEXT NOT NULL,
    payload BLOB NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """A readings message the engine took since the rule state was last written out: when it
    took it (µs since the epoch), the topic's site and gateway, the outbox id the message
    named, where it came from, and the message as it arrived."""

    now: int
    site: str
    gateway: str
    outbox: str | None
    source: str
    payload: bytes
    #: readings the engine took from it (not stored: the payload says)
    readings: int = 0


#: Rows of a rate-of-rise state's log whose samples have all left the window, deleted together
#: once there are this many (a delete per state and save cost more than the rows themselves).
EVICTED_CHUNKS = 4


def _pack(times: Sequence[int], values: Sequence[float]) -> bytes:
    """Samples as little-endian int64 µs followed by float64 values: exact, and compact."""
    n = len(times)
    return struct.pack(f"<{n}q{n}d", *times, *values)


def _unpack(data: bytes) -> list[tuple[int, float]]:
    n = len(data) // 16
    fields = struct.unpack(f"<{n}q{n}d", data[: 16 * n])
    return list(zip(fields[:n], fields[n:], strict=True))


Key = tuple[str, str, str, str]  # site, gateway, sensor, rule

#: µs since the epoch of the first instant of year 10000: no sample is later.
_MAX_US = 253_402_300_800_000_000


def _unreadable(what: str, exc: Exception) -> None:
    log.error(
        "the saved rule state of %s cannot be read (%s: %s); it starts again",
        what,
        type(exc).__name__,
        str(exc)[:200],
    )


@dataclass
class _Changes:
    gateways: list[tuple[str, str, bytes]]
    sensors: list[tuple[str, str, str, bytes]]
    #: (site, gateway, sensor, rule, first, newest, packed samples)
    chunks: list[tuple[str, str, str, str, int, int, bytes]]
    cutoffs: list[tuple[str, str, str, str, int]]
    #: per rate-of-rise state saved: the state, and how many samples it had taken then
    pushed: dict[Key, tuple[RiseState, int]]
    #: per state whose log changed: the newest sample of each row it keeps, oldest row first
    stored: dict[Key, list[int]]


@contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction on a connection in autocommit mode: all of it or nothing."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


class SqliteRuleState:
    def __init__(self, path: Path) -> None:
        private_file(path)  # readings and where sensors are: for the owner only
        self.path = path
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self._lock = asyncio.Lock()
        self._writing = threading.Lock()
        self._closed = False
        #: per rate-of-rise state in the log: the state (another one in its place started
        #: again) and how many samples it had taken when it was last saved
        self._saved: dict[Key, tuple[RiseState, int]] = {}
        #: per rate-of-rise state, the newest sample of each of its rows in the log
        self._stored: dict[Key, list[int]] = {}
        #: rows in the input journal (the state rows do not hold what they did yet)
        self.journaled = self._db.execute("SELECT count(*) FROM input_journal").fetchone()[0]

    def load(self) -> dict[tuple[str, str], GatewayTrack]:
        """Every gateway's track. A gateway row of an older husvakt holds its sensors inline;
        they are read from it and written as rows of their own at the next save."""
        self._convert_sample_rows()
        logged: dict[Key, list[tuple[int, float]]] = defaultdict(list)
        starts: dict[Key, int] = {}
        for site, gateway, sensor, rule, first, newest, data in self._db.execute(
            "SELECT site, gateway, sensor, rule, first, newest, data FROM rise_chunks "
            "ORDER BY rowid"
        ):
            key = (site, gateway, sensor, rule)
            # a log row is outside input like any file: a sample no clock or rate can hold
            # (a damaged file) is left out, never handed to the rules
            logged[key].extend(
                (us, v) for us, v in _unpack(bytes(data)) if 0 <= us < _MAX_US and math.isfinite(v)
            )
            starts[key] = first  # the newest row's window start holds
            self._stored.setdefault(key, []).append(newest)
        samples: dict[tuple[str, str, str], dict[str, list[tuple[int, float]]]] = defaultdict(dict)
        for key, kept in logged.items():
            start = starts[key]
            samples[key[:3]][key[3]] = [(us, v) for us, v in kept if us >= start]
        tracks: dict[tuple[str, str], GatewayTrack] = {}
        for site, gateway, data in self._db.execute(
            "SELECT site, gateway, data FROM gateway_state"
        ):
            try:
                track = decode_track(bytes(data))
            except Exception as exc:  # noqa: BLE001 - one unreadable row must not stop the engine
                _unreadable(f"{site}/{gateway}", exc)
                continue
            track.changed.update(track.sensors)  # inline (older layout): to be rewritten
            tracks[(site, gateway)] = track
        for site, gateway, sensor, data in self._db.execute(
            "SELECT site, gateway, sensor, data FROM sensor_state"
        ):
            owner = tracks.get((site, gateway))
            if owner is None:
                continue
            try:
                sensor_track = decode_sensor(bytes(data), samples.get((site, gateway, sensor), {}))
            except Exception as exc:  # noqa: BLE001 - one unreadable row must not stop the engine
                _unreadable(f"{site}/{gateway}/{sensor}", exc)
                continue
            owner.sensors[sensor] = sensor_track
            owner.changed.discard(sensor)
            for rule, state in sensor_track.states.items():
                if isinstance(state, RiseState):
                    self._saved[(site, gateway, sensor, rule)] = (state, state.pushed)
        return tracks

    def _convert_sample_rows(self) -> None:
        """An older husvakt's log held a row per sample (exactly the windows): one row per
        state now."""
        rows: dict[Key, list[tuple[int, float]]] = defaultdict(list)
        for site, gateway, sensor, rule, ts, value in self._db.execute(
            "SELECT site, gateway, sensor, rule, ts, value FROM rise_samples ORDER BY rowid"
        ):
            rows[(site, gateway, sensor, rule)].append((int(ts), float(value)))
        if not rows:
            return
        with _transaction(self._db) as db:
            db.executemany(
                "INSERT INTO rise_chunks VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        *key,
                        kept[0][0],
                        kept[-1][0],
                        _pack([t for t, _ in kept], [v for _, v in kept]),
                    )
                    for key, kept in rows.items()
                ],
            )
            db.execute("DELETE FROM rise_samples")

    def _changes(self, tracks: Iterable[GatewayTrack]) -> _Changes:
        changes = _Changes([], [], [], [], {}, {})
        for track in tracks:
            site, gateway = track.site, track.gateway
            changes.gateways.append((site, gateway, encode_track(track, sensors=False)))
            for sensor_id in track.changed:
                sensor = track.sensors.get(sensor_id)
                if sensor is None:
                    continue
                changes.sensors.append((site, gateway, sensor_id, encode_sensor(sensor)))
                for rule, state in sensor.states.items():
                    if isinstance(state, RiseState):
                        self._rise_changes(changes, (site, gateway, sensor_id, rule), state)
        return changes

    def _rise_changes(self, changes: _Changes, key: Key, state: RiseState) -> None:
        previous = self._saved.get(key)
        saved = previous[1] if previous is not None and previous[0] is state else 0
        stored = self._stored.get(key, [])
        first = state.first()
        if saved == 0 or first is None:
            # a state new since the last save (a rule that failed starts again), or one that
            # holds nothing: its log starts again too
            if stored:
                changes.cutoffs.append((*key, 2**62))
            stored = []
        offsets, values, base = state.offsets, state.values, state.base
        new = min(state.pushed - saved, len(offsets))
        if new > 0:  # the samples not saved yet (those that already left the window: never)
            fresh = range(len(offsets) - new, len(offsets))
            newest = base + offsets[-1]
            packed = _pack([base + offsets[i] for i in fresh], [values[i] for i in fresh])
            changes.chunks.append((*key, first or 0, newest, packed))
            stored = [*stored, newest]  # a copy: the log is as it was until the write is done
        if first is not None:
            evicted = bisect_left(stored, first)  # newest samples ascend, row by row
            if evicted >= EVICTED_CHUNKS:  # rows wholly out of the window leave the log
                changes.cutoffs.append((*key, first))
                stored = stored[evicted:]
        changes.pushed[key] = (state, state.pushed)
        changes.stored[key] = stored

    def _write(self, changes: _Changes) -> None:
        with self._writing:  # a write still running in its thread when the engine stops
            if self._closed:
                raise StreamError(f"rule state {self.path} is closed; the changes stay unsaved")
            self._write_open(changes)

    def _write_open(self, changes: _Changes) -> None:
        with _transaction(self._db) as db:
            db.executemany(
                "INSERT INTO gateway_state (site, gateway, data) VALUES (?, ?, ?) "
                "ON CONFLICT (site, gateway) DO UPDATE SET data = excluded.data",
                changes.gateways,
            )
            db.executemany(
                "INSERT INTO sensor_state (site, gateway, sensor, data) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (site, gateway, sensor) DO UPDATE SET data = excluded.data",
                changes.sensors,
            )
            db.executemany(
                "DELETE FROM rise_chunks WHERE site = ? AND gateway = ? AND sensor = ? "
                "AND rule = ? AND newest < ?",
                changes.cutoffs,
            )
            db.executemany("INSERT INTO rise_chunks VALUES (?, ?, ?, ?, ?, ?, ?)", changes.chunks)
            if self.journaled:  # the rows written hold what every journaled message did
                db.execute("DELETE FROM input_journal")
        self._saved.update(changes.pushed)
        self._stored.update(changes.stored)
        self.journaled = 0

    async def save(self, tracks: Iterable[GatewayTrack]) -> None:
        """Write what changed in these tracks since they were last saved (one transaction)."""
        tracks = list(tracks)
        async with self._lock:
            changes = self._changes(tracks)
            if changes.gateways or self.journaled:
                await asyncio.to_thread(self._write, changes)
            for track in tracks:  # only once written: a failed write is tried again next time
                track.changed.clear()

    async def journal(self, entries: Sequence[JournalEntry]) -> None:
        """Append readings messages to the input journal (one transaction): what they changed
        is written out by a later `save`, and until then a restart takes them again."""
        if not entries:
            return
        rows = [(e.now, e.site, e.gateway, e.outbox, e.source, e.payload) for e in entries]
        async with self._lock:
            await asyncio.to_thread(self._append, rows)
            self.journaled += len(rows)

    def _append(self, rows: list[tuple[int, str, str, str | None, str, bytes]]) -> None:
        with self._writing:
            if self._closed:
                raise StreamError(f"rule state {self.path} is closed; the changes stay unsaved")
            with _transaction(self._db) as db:  # all of the group's messages or none
                db.executemany(
                    "INSERT INTO input_journal (now, site, gateway, outbox, source, payload) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    rows,
                )

    def journaled_entries(self) -> list[JournalEntry]:
        """The input journal in the order the engine took its messages (after `load`). A row
        that is not what `journal` writes (a damaged file) is logged and left out."""
        entries = []
        for row in self._db.execute(
            "SELECT id, now, site, gateway, outbox, source, payload FROM input_journal ORDER BY id"
        ):
            number, now, site, gateway, outbox, source, payload = row
            texts = (site, gateway, source) + (() if outbox is None else (outbox,))
            if (
                type(now) is not int
                or not 0 <= now < _MAX_US
                or not all(type(t) is str for t in texts)
                or type(payload) is not bytes
            ):
                log.error("journaled message %s of %s cannot be read; it is left out", number,
                          self.path)  # fmt: skip
                continue
            entries.append(JournalEntry(now, site, gateway, outbox, source, payload))
        return entries

    def close(self) -> None:
        """Close once any write in progress has finished (closing the connection under a write
        in another thread would crash the process)."""
        with self._writing:
            self._closed = True
            self._db.close()


def gateway_contacts(path: Path) -> dict[str, list[tuple[str, datetime | None]]]:
    """Each site's gateways and when the rule engine last heard from them, read from a state
    file another process writes (read-only; an unreadable file says nothing)."""
    out: dict[str, list[tuple[str, datetime | None]]] = {}
    if not path.exists():
        return out
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT site, gateway, data FROM gateway_state").fetchall()
    except sqlite3.Error:
        rows = []
    finally:
        db.close()
    for site, gateway, data in rows:
        try:
            contact = decode_track(bytes(data)).contact
        except (ValueError, KeyError, TypeError, json.JSONDecodeError):
            contact = None
        out.setdefault(site, []).append((gateway, contact))
    return out
