"""The dead-letter quarantine: input that could not be used, kept where an admin can see it.

Whatever fails to decode, validate, evaluate or store is added here — by where it came from
(a topic, a source, a Kafka key), a reason slug, and its first bytes — instead of stopping the
loop that read it. Entries are aggregated per (source, reason) with a count and the first and
latest time, so a flood of garbage costs one row, not a row per message; both the entries kept
in memory and the rows kept on disk are bounded. Logs are rate-limited per reason.

`husvakt quarantine list|show|purge` reads what `SqliteQuarantine` wrote.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections import Counter, OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from gateway.secrets import private_file

__all__ = ["Entry", "Quarantine", "SqliteQuarantine"]

log = logging.getLogger("husvakt.quarantine")

#: How much of the refused input is kept: enough to recognise it, never a whole flood.
SAMPLE_BYTES = 256
DETAIL_CHARS = 300
SOURCE_CHARS = 200


@dataclass(slots=True)
class Entry:
    source: str
    reason: str
    count: int
    first_at: datetime
    last_at: datetime
    sample: bytes
    detail: str
    id: int | None = None


def _text(text: str, limit: int) -> str:
    """Text that any store and log can take: cut, lone surrogates escaped, NUL made visible."""
    return text[:limit].encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\0")


def _bytes(raw: bytes | str | None) -> bytes:
    if raw is None:
        return b""
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "backslashreplace")
    return raw[:SAMPLE_BYTES]


class Quarantine:
    """Counts unusable input by reason; keeps the latest sample per (source, reason); logs the
    first of a reason, then at most once per `log_every` seconds with the count since, so
    garbage on a line cannot flood the log. With `store`, entries are written to it by `flush`
    (or `run`, which flushes every few seconds)."""

    def __init__(
        self,
        *,
        log_every: float = 60.0,
        keep: int = 1000,
        store: SqliteQuarantine | None = None,
    ) -> None:
        self._counts: Counter[str] = Counter()
        self._log_every = log_every
        self._last_logged: dict[str, float] = {}
        self._unlogged: Counter[str] = Counter()
        self._entries: OrderedDict[tuple[str, str], Entry] = OrderedDict()
        self._pending: dict[tuple[str, str], int] = {}
        self._keep = keep
        self.store = store

    def add(
        self, kind: str, detail: str, *, source: str = "", raw: bytes | str | None = None
    ) -> None:
        """One refused input: its reason slug (`kind`), what was wrong, where it came from and
        its bytes. Never raises."""
        kind, source, detail = (
            _text(kind, 64),
            _text(source, SOURCE_CHARS),
            _text(detail, DETAIL_CHARS),
        )
        self._counts[kind] += 1
        self._unlogged[kind] += 1
        now = time.monotonic()
        last = self._last_logged.get(kind)
        if last is None or now - last >= self._log_every:
            log.warning(
                "quarantined %d × %s (latest: %s%s)",
                self._unlogged[kind],
                kind,
                f"{source}: " if source else "",
                detail,
            )
            self._last_logged[kind] = now
            self._unlogged[kind] = 0
        key = (source, kind)
        at = datetime.now(UTC)
        entry = self._entries.get(key)
        if entry is None:
            entry = Entry(key[0], kind, 0, at, at, b"", "")
            self._entries[key] = entry
            if len(self._entries) > self._keep:
                self._entries.popitem(last=False)
        else:
            self._entries.move_to_end(key)
        entry.count += 1
        entry.last_at = at
        entry.sample = _bytes(raw)
        entry.detail = detail
        self._pending[key] = self._pending.get(key, 0) + 1

    @property
    def counts(self) -> dict[str, int]:
        return dict(self._counts)

    @property
    def total(self) -> int:
        return sum(self._counts.values())

    def entries(self) -> list[Entry]:
        """What is held in memory, most recent last."""
        return list(self._entries.values())

    def flush(self) -> None:
        """Write what was added since the last flush to the store (blocking; small)."""
        if self.store is None or not self._pending:
            self._pending.clear()
            return
        pending, self._pending = self._pending, {}
        rows = []
        for key, added in pending.items():
            entry = self._entries.get(key)
            if entry is not None:
                rows.append((entry, added))
        self.store.upsert(rows)

    async def run(self, every: float = 2.0) -> None:
        """Flush every `every` seconds until cancelled, and once more then."""
        try:
            while True:
                await asyncio.sleep(every)
                await asyncio.to_thread(self._flush_logged)
        finally:
            self._flush_logged()

    def _flush_logged(self) -> None:
        try:
            self.flush()
        except Exception as exc:  # noqa: BLE001 - a quarantine that cannot be written stops nothing
            log.warning("could not write the quarantine to %s: %s", self._where(), exc)

    def _where(self) -> str:
        return str(self.store.path) if self.store else "memory"


_SCHEMA = """
CREATE TABLE IF NOT EXISTS quarantine (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    source TEXT NOT NULL,
    reason TEXT NOT NULL,
    count INTEGER NOT NULL,
    first_at TEXT NOT NULL,
    last_at TEXT NOT NULL,
    sample BLOB NOT NULL,
    detail TEXT NOT NULL,
    UNIQUE (source, reason)
)
"""


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="milliseconds")


class SqliteQuarantine:
    """The quarantine on disk: one row per (source, reason), at most `max_rows` (the rows
    updated longest ago go first)."""

    def __init__(self, path: Path, *, max_rows: int = 10_000) -> None:
        self.path = path
        self._max_rows = max_rows
        private_file(path)  # what was refused, raw: for the owner only
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=10)
        with contextlib.suppress(sqlite3.OperationalError):  # another process holds it: fine
            self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(_SCHEMA)

    def upsert(self, rows: Sequence[tuple[Entry, int]]) -> None:
        if not rows:
            return
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.executemany(
                "INSERT INTO quarantine (source, reason, count, first_at, last_at, sample, detail)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (source, reason) DO UPDATE SET"
                " count = count + excluded.count, last_at = excluded.last_at,"
                " sample = excluded.sample, detail = excluded.detail",
                [
                    (
                        e.source,
                        e.reason,
                        added,
                        _iso(e.first_at),
                        _iso(e.last_at),
                        e.sample,
                        e.detail,
                    )
                    for e, added in rows
                ],
            )
            self._db.execute(
                "DELETE FROM quarantine WHERE id NOT IN "
                "(SELECT id FROM quarantine ORDER BY last_at DESC LIMIT ?)",
                (self._max_rows,),
            )
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def entries(self, *, reason: str | None = None) -> list[Entry]:
        sql = "SELECT id, source, reason, count, first_at, last_at, sample, detail FROM quarantine"
        args: tuple[str, ...] = ()
        if reason is not None:
            sql += " WHERE reason = ?"
            args = (reason,)
        rows = self._db.execute(sql + " ORDER BY last_at DESC", args).fetchall()
        return [
            Entry(
                source=r[1],
                reason=r[2],
                count=r[3],
                first_at=datetime.fromisoformat(r[4]),
                last_at=datetime.fromisoformat(r[5]),
                sample=bytes(r[6]),
                detail=r[7],
                id=r[0],
            )
            for r in rows
        ]

    def get(self, entry_id: int) -> Entry | None:
        found = [e for e in self.entries() if e.id == entry_id]
        return found[0] if found else None

    def purge(self, *, reason: str | None = None) -> int:
        if reason is None:
            return self._db.execute("DELETE FROM quarantine").rowcount
        return self._db.execute("DELETE FROM quarantine WHERE reason = ?", (reason,)).rowcount

    def close(self) -> None:
        self._db.close()
