"""Sinks: external systems every case change is mirrored to (a signed webhook, Dynamics 365).

The store keeps the outbox (see `casebridge.store.sinks`): a case's `version`, bumped with
every change in the change's own transaction, against the version each sink last mirrored.
`SinkRunner` asks the store what changed, hands the cases to the sink, and writes down each
case's outcome as soon as the sink reports it — so a process killed mid-mirror leaves nothing
to lose (the change is still newer than what was mirrored) and, since every sink writes
idempotently (keys and ids derived from the case and event), nothing that gets doubled.

    SinkError                  a sink could not mirror
    ├── SinkDownError        the whole external system: unreachable, throttling, refusing
    │                          our credentials — the runner pauses the sink, no case is blamed
    └── (per-case failures are reported as `Failed`, not raised)

A new sink is a module with a class that has `id` and `mirror(jobs, report)`, and a line in
`husvakt.assemble.sinks_for`.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from casebridge.models import CaseEvent, MirrorTask
from casebridge.store import CaseStore
from gateway.clock import Clock

__all__ = [
    "Failed",
    "MirrorJob",
    "Mirrored",
    "Report",
    "Sink",
    "SinkDownError",
    "SinkError",
    "SinkRunner",
    "sink_delay",
]

log = logging.getLogger("husvakt.casebridge.sinks")


class SinkError(Exception):
    """A sink could not mirror."""


class SinkDownError(SinkError):
    """The external system as a whole cannot take changes now; try again after `retry_after`
    seconds (a 429's Retry-After), or after the runner's own backoff when None."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class MirrorJob:
    """One case to mirror: the case as it is, and its events the sink has not had yet."""

    task: MirrorTask
    events: tuple[CaseEvent, ...]

    @property
    def last_event(self) -> int:
        return self.events[-1].cursor if self.events else self.task.synced_event


@dataclass(frozen=True)
class Mirrored:
    """The external system holds the case as of the job (and `remote_id` names its record)."""

    remote_id: str | None = None


@dataclass(frozen=True)
class Failed:
    """This case could not be mirrored this time (`event`: the events up to it did get
    through)."""

    error: str
    event: int | None = None
    remote_id: str | None = None


Report = Callable[[MirrorJob, Mirrored | Failed], Awaitable[None]]


class Sink(Protocol):
    id: str

    async def mirror(self, jobs: Sequence[MirrorJob], report: Report) -> None:
        """Mirror each job, in order per case, calling `report` as each one is done; raise
        `SinkDownError` when the system cannot take changes (jobs not reported are tried
        again later)."""
        ...

    async def aclose(self) -> None:
        """Let go of connections."""
        ...


def sink_delay(attempts: int, cap: float) -> float:
    """1 s, 2 s, 4 s … up to `cap`: an outage of hours is noticed within `cap` of its end."""
    return min(cap, 2.0 ** max(0, attempts - 1))


class SinkRunner:
    """Mirrors changed cases to one sink until stopped; never blocks or touches the rules."""

    def __init__(
        self,
        *,
        store: CaseStore,
        sink: Sink,
        clock: Clock,
        every: float = 2.0,
        batch: int = 100,
        max_retry: float = 300.0,
        pull: Callable[[datetime], Awaitable[None]] | None = None,
        pull_every: float = 0.0,
    ) -> None:
        self._store = store
        self._sink = sink
        self._clock = clock
        self._every = every
        self._batch = batch
        self._max_retry = max_retry
        self._pull = pull
        self._pull_every = pull_every
        self._next_pull: datetime | None = None
        self._paused_until: datetime | None = None
        self._outages = 0
        #: what the store says of the system (None: not known yet, after a start)
        self._stored_down: bool | None = None
        #: mirrored / failed / unavailable counts, for the metrics
        self.counts: Counter[str] = Counter()
        self.available = True

    @property
    def id(self) -> str:
        return self._sink.id

    async def start(self) -> None:
        if await self._store.adopt_sink(self._sink.id, now=self._clock.now()):
            log.info("sink %s: first start; open cases are mirrored from now on", self._sink.id)

    async def run_due(self, now: datetime) -> int:
        """Mirror what is due (in rounds of `batch` until nothing is); how many cases were
        mirrored (those that failed are tried again later)."""
        done = 0
        if self._paused_until is not None and now < self._paused_until:
            return 0
        if not await self._pull_due(now):
            return 0
        while True:
            tasks = await self._store.mirror_due(self._sink.id, now, limit=self._batch)
            if not tasks:
                break
            jobs = [
                MirrorJob(t, tuple(await self._store.events_since(t.case.id, t.synced_event)))
                for t in tasks
            ]
            reported = mirrored = 0

            async def report(job: MirrorJob, result: Mirrored | Failed) -> None:
                nonlocal reported, mirrored
                reported += 1
                mirrored += isinstance(result, Mirrored)
                await self._record(job, result, self._clock.now())

            try:
                await self._sink.mirror(jobs, report)
            except SinkDownError as exc:
                await self._unavailable(exc, now)
                return done + mirrored
            except Exception as exc:  # a sink's bug: backed off like an outage, never a loop
                log.exception("sink %s: mirroring failed", self._sink.id)
                await self._unavailable(SinkDownError(f"{type(exc).__name__}: {exc}"), now)
                return done + mirrored
            await self._up(now)
            done += mirrored
            if len(tasks) < self._batch or reported < len(tasks):
                break
        return done

    async def _pull_due(self, now: datetime) -> bool:
        """Fetch the changes made over there when due (before mirroring ours: a case resolved
        there is then not written over); False when the system is unavailable."""
        if self._pull is None or self._pull_every <= 0:
            return True
        if self._next_pull is not None and now < self._next_pull:
            return True
        self._next_pull = now + timedelta(seconds=self._pull_every)
        try:
            await self._pull(now)
        except SinkDownError as exc:
            await self._unavailable(exc, now)
            return False
        except Exception:  # what came back was unusable: ours still go out
            self.counts["pull_failed"] += 1
            log.exception("sink %s: fetching the changes made there failed", self._sink.id)
        else:
            await self._up(now)
        return True

    async def _unavailable(self, exc: SinkDownError, now: datetime) -> None:
        self._outages += 1
        self.available = False
        self.counts["unavailable"] += 1
        wait = exc.retry_after
        if wait is None:
            wait = sink_delay(self._outages, self._max_retry)
        self._paused_until = now + timedelta(seconds=max(0.0, wait))
        log.warning("sink %s: %s; trying again in %.0f s", self._sink.id, exc, wait)
        await self._store.sink_down(self._sink.id, str(exc), now=now)
        self._stored_down = True

    async def _up(self, now: datetime) -> None:
        """The system took a round: no longer down (said to the store once)."""
        self._outages = 0
        self.available = True
        if self._stored_down is not False:
            await self._store.sink_down(self._sink.id, None, now=now)
            self._stored_down = False

    async def _record(self, job: MirrorJob, result: Mirrored | Failed, now: datetime) -> None:
        task = job.task
        if isinstance(result, Mirrored):
            self.counts["mirrored"] += 1
            await self._store.mirrored(
                self._sink.id, task, event=job.last_event, remote_id=result.remote_id, now=now
            )
            return
        self.counts["failed"] += 1
        log.warning("sink %s: %s: %s", self._sink.id, task.case.id, result.error)
        wait = sink_delay(task.attempts + 1, self._max_retry)
        await self._store.mirror_failed(
            self._sink.id,
            task,
            error=result.error,
            retry_at=now + timedelta(seconds=wait),
            now=now,
            event=result.event,
            remote_id=result.remote_id,
        )

    async def aclose(self) -> None:
        await self._sink.aclose()

    async def run(self, stop: asyncio.Event) -> None:
        """Mirror every `every` seconds until `stop`; a failure of the store is logged and
        tried again, never the end of the loop."""
        started = False
        try:
            while not stop.is_set():
                try:
                    if not started:
                        await self.start()
                        started = True
                    await self.run_due(self._clock.now())
                except Exception:
                    log.exception("sink %s: mirroring failed; trying again", self._sink.id)
                await self._clock.sleep(self._every)
        finally:
            await self.aclose()
