"""The embedded engine: one asyncio task applying the pure rules to a stream of readings."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import datetime

from gateway.clock import Clock
from gateway.models import Reading
from stream.models import Alarm
from stream.rules import RuleState, evaluate
from stream.table import RuleTable

__all__ = ["AlarmSink", "EmbeddedEngine"]

log = logging.getLogger("husvakt.stream")

#: Where alarms go (the case bridge in-process). Awaited before the next reading: an alarm is
#: handed off before the engine moves on, so none is lost between stream and cases.
AlarmSink = Callable[[Alarm], Awaitable[None]]


class EmbeddedEngine:
    """Evaluates readings in arrival order, per sensor in measurement-time order."""

    def __init__(
        self, *, table: RuleTable, clock: Clock, sink: AlarmSink, late_after: float = 300.0
    ) -> None:
        self._table = table
        self._clock = clock
        self._sink = sink
        self._late_after = late_after
        self._states: dict[tuple[str, str, str], RuleState] = {}
        self._last_ts: dict[tuple[str, str], datetime] = {}
        self.counts: Counter[str] = Counter()

    async def process(self, reading: Reading) -> None:
        key = (reading.site, reading.sensor)
        last = self._last_ts.get(key)
        if last is not None and reading.ts < last:
            self.counts["out_of_order"] += 1
            return
        self._last_ts[key] = reading.ts
        self.counts["readings"] += 1
        now = self._clock.now()
        for rule in self._table.rules_for(reading.site, reading.sensor, reading.kind):
            state_key = (reading.site, reading.sensor, rule.id)
            state = self._states.get(state_key, RuleState())
            new_state, alarms = evaluate(state, reading, rule, now, late_after=self._late_after)
            if new_state != state:
                self._states[state_key] = new_state
            for alarm in alarms:
                self.counts[f"alarms_{alarm.state}"] += 1
                log.info(
                    "%s %s %s/%s (%s, %.1f)",
                    alarm.condition,
                    alarm.state,
                    alarm.site,
                    alarm.sensor,
                    alarm.severity,
                    alarm.value,
                )
                await self._sink(alarm)
