"""Saying when behind: how far the stream is from real time, and the `stream_lag` case.

Each batch the engine evaluates tells how old its newest reading was when it was evaluated. A
stream that keeps up sees fresh readings from some gateway all the time; one that falls behind
sees only old ones. So the lag is the *smallest* such age over the last `window` seconds — a
gateway draining a backlog after an outage does not count as lag while any other gateway is on
time — and the stream is behind when that smallest age has stayed above `max_lag` for a whole
window. Then every site it serves gets a `stream_lag` case (its alarms may come late), which
clears when the stream is on time again. Pure: the engine passes the time in.
"""

from __future__ import annotations

import logging
from collections import deque
from datetime import datetime

from stream.models import Alarm, AlarmState
from stream.rules import Episode

__all__ = ["LAG_RULE", "LagMonitor"]

log = logging.getLogger("husvakt.stream")

#: The id of the maintenance rule that raises `stream_lag` (it has no row in the table).
LAG_RULE = "stream-lag"
#: The `sensor` of a stream_lag case: the stream itself.
STREAM = "stream"


class LagMonitor:
    def __init__(self, *, max_lag: float, window: float) -> None:
        self.max_lag = max_lag
        self.window = window
        self._ages: deque[tuple[datetime, float]] = deque()
        self._since: datetime | None = None
        self._warned: datetime | None = None
        self.episode: Episode | None = None

    def observe(self, newest: datetime, now: datetime) -> None:
        """A batch whose newest reading was measured at `newest` was evaluated at `now`."""
        age = max(0.0, (now - newest).total_seconds())
        if self._since is None:
            self._since = now
        while self._ages and self._ages[-1][1] >= age:
            self._ages.pop()  # a monotonic queue: its head is the window's minimum
        self._ages.append((now, age))
        self._expire(now)
        lag = self._ages[0][1]
        quiet = self._warned is not None and (now - self._warned).total_seconds() < self.window
        if lag > self.max_lag / 2 and not quiet:
            log.warning("the stream is %.0f s behind real time", lag)
            self._warned = now

    def _expire(self, now: datetime) -> None:
        while self._ages and (now - self._ages[0][0]).total_seconds() > self.window:
            self._ages.popleft()

    def lag(self, now: datetime) -> float | None:
        """The smallest age of a batch's newest reading over the last window (None: none)."""
        self._expire(now)
        return self._ages[0][1] if self._ages else None

    def tick(self, now: datetime, sites: list[str]) -> list[Alarm]:
        """The stream_lag alarms for `sites` that this moment raises or clears."""
        lag = self.lag(now)
        watched = self._since is not None and (now - self._since).total_seconds() >= self.window
        behind = watched and lag is not None and lag > self.max_lag
        if behind and self.episode is None:
            assert lag is not None
            reason = (
                f"the rules evaluate readings {lag:.0f} s after they were measured (more than "
                f"{self.max_lag:g} s for {self.window:g} s): alarms may come late"
            )
            stamp = now.strftime("%Y%m%dT%H%M%SZ")
            self.episode = Episode(f"{LAG_RULE}:{stamp}", now, "critical", reason)
            return [self._alarm(site, "raised", lag, now) for site in sites]
        if self.episode is not None and lag is not None and lag <= self.max_lag:
            alarms = [self._alarm(site, "cleared", lag, now) for site in sites]
            self.episode = None
            return alarms
        return []

    def _alarm(self, site: str, what: AlarmState, lag: float, now: datetime) -> Alarm:
        assert self.episode is not None
        return Alarm(
            episode=f"{self.episode.id}:{site}",
            site=site,
            sensor=STREAM,
            condition="stream_lag",
            state=what,
            severity=self.episode.severity,
            value=round(lag, 1),
            threshold=self.max_lag,
            rule=LAG_RULE,
            started_at=self.episode.since,
            ts=now,
            reason=self.episode.reason,
        )
