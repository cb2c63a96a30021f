"""What both engines do with one reading from outside: the registry admits it, the rules
evaluate it, and whatever is refused or fails goes to the quarantine — for that one reading.

`Intake.readings` never raises: an unknown sensor, a reading dated too far ahead, a forged seq
or any exception while evaluating quarantines the reading, and the engine goes on with the next.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import datetime

from gateway.models import Reading
from gateway.quarantine import Quarantine
from gateway.wire import Rejected
from stream.core import GatewayTrack, on_reading
from stream.models import Alarm
from stream.registry import Registry
from stream.table import RuleTable

__all__ = ["Intake", "quarantine_rejected"]

log = logging.getLogger("husvakt.stream")


def quarantine_rejected(quarantine: Quarantine, rejected: Iterable[Rejected], source: str) -> None:
    """The readings the wire refused within a batch whose other readings go on."""
    for refused in rejected:
        quarantine.add(
            f"reading-{refused.reason}",
            f"reading [{refused.index}]: {refused.detail}",
            source=source,
            raw=refused.raw,
        )


class Intake:
    def __init__(
        self,
        *,
        table: RuleTable,
        registry: Registry | None,
        quarantine: Quarantine,
        counts: Counter[str],
        late_after: float,
        max_skew: float,
        watch_gateway: bool = True,
    ) -> None:
        self._table = table
        self._registry = registry
        self.quarantine = quarantine
        self._counts = counts
        self._late_after = late_after
        self._max_skew = max_skew
        self._watch_gateway = watch_gateway

    def admits_gateway(self, site: str, gateway: str, *, source: str) -> bool:
        """Whether messages of this gateway (a status, a batch) may change any state; what the
        registry refuses is quarantined."""
        refused = self._registry.refuse_gateway(site, gateway) if self._registry else None
        if refused is None:
            return True
        self._counts["refused"] += 1
        self.quarantine.add(
            refused, f"gateway {site}/{gateway} is not in the config", source=source
        )
        return False

    def readings(
        self,
        track_of: Callable[[str, str], GatewayTrack],
        readings: Iterable[Reading],
        now: datetime,
        *,
        outbox: str | None,
        source: str,
        again: bool = False,
    ) -> list[Alarm]:
        """The alarms of these readings (`track_of` gives a reading's gateway's track; a batch's
        readings share one, looked up once). `again`: readings taken before, replayed from the
        input journal after a restart — their state changes are made once more; they are not
        counted or quarantined again."""
        registry, table, counts = self._registry, self._table, self._counts
        late_after, skew, watch = self._late_after, self._max_skew, self._watch_gateway
        alarms: list[Alarm] = []
        evaluated = 0
        track: GatewayTrack | None = None
        for reading in readings:
            refused = registry.refuse(reading) if registry is not None else None
            if refused is not None:
                if not again:
                    self._refused(refused, reading)
                continue
            try:
                if track is None or track.gateway != reading.gateway or track.site != reading.site:
                    track = track_of(reading.site, reading.gateway)
                produced, outcome = on_reading(
                    track,
                    reading,
                    table,
                    now,
                    late_after=late_after,
                    watch_gateway=watch,
                    max_skew=skew,
                    outbox=outbox,
                )
            except Exception as exc:  # noqa: BLE001 - one reading never stops the others: `_failed` logs it
                if not again:  # else it failed, and was quarantined, the first time
                    self._failed(exc, reading, source)
                continue
            if again:
                continue
            if produced:
                alarms += produced
            if outcome == "evaluated":
                evaluated += 1
            else:
                self._other(outcome, reading, now, source)
        if evaluated:
            counts["readings"] += evaluated
        return alarms

    def _refused(self, refused: str, reading: Reading) -> None:
        self._counts["refused"] += 1
        self.quarantine.add(
            refused,
            f"{reading.sensor} ({reading.kind}) from gateway {reading.gateway} is not in "
            "the config",
            source=f"{reading.site}/{reading.gateway}/{reading.sensor}",
            raw=repr(reading),
        )

    def _failed(self, exc: Exception, reading: Reading, source: str) -> None:
        log.exception("evaluating %s/%s failed", reading.site, reading.sensor)
        self._counts["failed"] += 1
        self.quarantine.add(
            "evaluate-failed",
            f"{type(exc).__name__}: {exc}",
            source=source or f"{reading.site}/{reading.gateway}",
            raw=repr(reading),
        )

    def _other(self, outcome: str, reading: Reading, now: datetime, source: str) -> None:
        """A reading that was not evaluated (a duplicate, out of order, dated ahead, ...)."""
        self._counts[outcome] += 1
        if outcome in ("clock_ahead", "seq_jump"):
            self.quarantine.add(
                outcome.replace("_", "-"),
                f"{reading.sensor} at {reading.ts.isoformat()} seq {reading.seq} (now "
                f"{now.isoformat()})",
                source=source or f"{reading.site}/{reading.gateway}",
                raw=repr(reading),
            )
