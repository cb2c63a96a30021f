"""Rule state that survives a restart (embedded engine): one row per gateway in SQLite.

The engine saves what a batch changed after the batch's alarms were handed to the case bridge
and before the batch leaves the outbox. A crash in between re-evaluates the batch from the last
saved state: the same alarms again, which the case bridge recognises by their episode.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Mapping
from pathlib import Path

__all__ = ["SqliteRuleState"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS gateway_state (
    site TEXT NOT NULL,
    gateway TEXT NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (site, gateway)
)
"""


class SqliteRuleState:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(_SCHEMA)
        self._lock = asyncio.Lock()

    def load(self) -> dict[tuple[str, str], bytes]:
        rows = self._db.execute("SELECT site, gateway, data FROM gateway_state").fetchall()
        return {(site, gateway): bytes(data) for site, gateway, data in rows}

    def _save(self, changed: Mapping[tuple[str, str], bytes]) -> None:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.executemany(
                "INSERT INTO gateway_state (site, gateway, data) VALUES (?, ?, ?) "
                "ON CONFLICT (site, gateway) DO UPDATE SET data = excluded.data",
                [(site, gateway, data) for (site, gateway), data in changed.items()],
            )
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    async def save(self, changed: Mapping[tuple[str, str], bytes]) -> None:
        if not changed:
            return
        async with self._lock:
            await asyncio.to_thread(self._save, dict(changed))

    def close(self) -> None:
        self._db.close()
