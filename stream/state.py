"""Rule state that survives a restart (embedded engine), in SQLite, saved in proportion to
what changed.

The engine saves what a batch changed after the batch's alarms were handed to the case bridge
and before the batch leaves the outbox. A crash in between re-evaluates the batch from the last
saved state: the same alarms again, which the case bridge recognises by their episode.

Layout: a row per gateway (its own fields), a row per sensor (its rule states), and a log of
rate-of-rise samples (one row a sample, deleted as it leaves its window). A batch that touched
two sensors writes two sensor rows and two samples — not every sensor of the gateway with every
sample of its window, which is what made a busy server fall behind.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from itertools import islice
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

__all__ = ["SqliteRuleState", "gateway_contacts"]

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
"""

Key = tuple[str, str, str, str]  # site, gateway, sensor, rule


@dataclass
class _Changes:
    gateways: list[tuple[str, str, bytes]]
    sensors: list[tuple[str, str, str, bytes]]
    samples: list[tuple[str, str, str, str, int, float]]
    cutoffs: list[tuple[str, str, str, str, int]]
    pushed: dict[Key, int]


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
        #: per rate-of-rise state, how many of its samples are in the log
        self._saved: dict[Key, int] = {}

    def load(self) -> dict[tuple[str, str], GatewayTrack]:
        """Every gateway's track. A gateway row of an older husvakt holds its sensors inline;
        they are read from it and written as rows of their own at the next save."""
        samples: dict[tuple[str, str, str], dict[str, list[tuple[int, float]]]] = defaultdict(
            lambda: defaultdict(list)
        )
        for site, gateway, sensor, rule, ts, value in self._db.execute(
            "SELECT site, gateway, sensor, rule, ts, value FROM rise_samples ORDER BY rowid"
        ):
            samples[(site, gateway, sensor)][rule].append((ts, value))
        tracks: dict[tuple[str, str], GatewayTrack] = {}
        for site, gateway, data in self._db.execute(
            "SELECT site, gateway, data FROM gateway_state"
        ):
            track = decode_track(bytes(data))
            track.changed.update(track.sensors)  # inline (older layout): to be rewritten
            tracks[(site, gateway)] = track
        for site, gateway, sensor, data in self._db.execute(
            "SELECT site, gateway, sensor, data FROM sensor_state"
        ):
            owner = tracks.get((site, gateway))
            if owner is None:
                continue
            sensor_track = decode_sensor(bytes(data), samples.get((site, gateway, sensor), {}))
            owner.sensors[sensor] = sensor_track
            owner.changed.discard(sensor)
            for rule, state in sensor_track.states.items():
                if isinstance(state, RiseState):
                    self._saved[(site, gateway, sensor, rule)] = state.pushed
        return tracks

    def _changes(self, tracks: Iterable[GatewayTrack]) -> _Changes:
        changes = _Changes([], [], [], [], {})
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
        new = state.pushed - self._saved.get(key, 0)
        if new > 0:
            newest = zip(reversed(state.times), reversed(state.values), strict=True)
            fresh = list(islice(newest, new))  # only the samples not saved yet
            changes.samples.extend((*key, us, value) for us, value in reversed(fresh))
        # what has left the window leaves the log
        first = state.first()
        oldest = 2**62 if first is None else first
        changes.cutoffs.append((*key, oldest))
        changes.pushed[key] = state.pushed

    def _write(self, changes: _Changes) -> None:
        with self._writing:  # a write still running in its thread when the engine stops
            if self._closed:
                raise StreamError(f"rule state {self.path} is closed; the changes stay unsaved")
            self._write_open(changes)

    def _write_open(self, changes: _Changes) -> None:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
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
                "DELETE FROM rise_samples WHERE site = ? AND gateway = ? AND sensor = ? "
                "AND rule = ? AND ts < ?",
                changes.cutoffs,
            )
            db.executemany("INSERT INTO rise_samples VALUES (?, ?, ?, ?, ?, ?)", changes.samples)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        self._saved.update(changes.pushed)

    async def save(self, tracks: Iterable[GatewayTrack]) -> None:
        """Write what changed in these tracks since they were last saved (one transaction)."""
        tracks = list(tracks)
        async with self._lock:
            changes = self._changes(tracks)
            if changes.gateways:
                await asyncio.to_thread(self._write, changes)
            for track in tracks:  # only once written: a failed write is tried again next time
                track.changed.clear()

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
