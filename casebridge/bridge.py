"""The case bridge: alarm → route → enrich → store. The only writer on the alarm path."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, Sequence

from casebridge.config import RouteRow
from casebridge.enrich import draft_case
from casebridge.routing import match
from casebridge.store import CaseStore, Outcome
from gateway.clock import Clock
from gateway.config import SensorConfig, SiteConfig
from stream.models import Alarm

__all__ = ["CaseBridge"]

log = logging.getLogger("husvakt.casebridge")


class CaseBridge:
    """Turns alarms into cases: at most one open case per (site, sensor, condition)."""

    def __init__(
        self,
        *,
        store: CaseStore,
        sites: Sequence[SiteConfig],
        sensors: Mapping[tuple[str, str], SensorConfig],
        routes: Sequence[RouteRow],
        clock: Clock,
    ) -> None:
        self._store = store
        self._sites = {s.id: s for s in sites}
        self._sensors = dict(sensors)
        self._routes = tuple(routes)
        self._clock = clock
        self.counts: Counter[str] = Counter()

    async def handle(self, alarm: Alarm) -> Outcome:
        sensor = self._sensors.get((alarm.site, alarm.sensor))
        facts = {
            "site": alarm.site,
            "sensor": alarm.sensor,
            "condition": alarm.condition,
            "severity": alarm.severity,
            "kind": sensor.kind if sensor else None,
            "building": sensor.building if sensor else None,
            "room": sensor.room if sensor else None,
        }
        route = match(self._routes, facts)
        draft = draft_case(alarm, site=self._sites.get(alarm.site), sensor=sensor, route=route)
        outcome = await self._store.record_alarm(alarm, draft, now=self._clock.now())
        self.counts[outcome.result] += 1
        if outcome.result == "opened" and outcome.case is not None:
            log.info("opened %s: %s → %s", outcome.case.id, draft.title, route.team)
        return outcome
