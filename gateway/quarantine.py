"""Counting input that cannot be used, with logs rate-limited per kind."""

from __future__ import annotations

import logging
import time
from collections import Counter

__all__ = ["Quarantine"]

log = logging.getLogger("husvakt.gateway.quarantine")


class Quarantine:
    """Counts unusable input by kind; logs the first of a kind, then at most once per
    `log_every` seconds with the count since, so garbage on a line cannot flood the log."""

    def __init__(self, *, log_every: float = 60.0) -> None:
        self._counts: Counter[str] = Counter()
        self._log_every = log_every
        self._last_logged: dict[str, float] = {}
        self._unlogged: Counter[str] = Counter()

    def add(self, kind: str, detail: str) -> None:
        self._counts[kind] += 1
        self._unlogged[kind] += 1
        now = time.monotonic()
        last = self._last_logged.get(kind)
        if last is None or now - last >= self._log_every:
            log.warning("quarantined %d × %s (latest: %s)", self._unlogged[kind], kind, detail)
            self._last_logged[kind] = now
            self._unlogged[kind] = 0

    @property
    def counts(self) -> dict[str, int]:
        return dict(self._counts)

    @property
    def total(self) -> int:
        return sum(self._counts.values())
