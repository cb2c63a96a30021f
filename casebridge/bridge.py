"""The case bridge: alarm → route → enrich → plan notifications → store (one transaction)."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import timedelta

from casebridge.config import CaseStoreConfig, NotifyConfig, RouteRow, TeamConfig
from casebridge.enrich import draft_case
from casebridge.history import ReadingHistory
from casebridge.lifecycle import new_case
from casebridge.models import PENDING_ID, CaseDraft, OpenPlan
from casebridge.people import deliveries_for, on_call
from casebridge.routing import match, route_facts
from casebridge.store import CaseStore, Outcome
from gateway.clock import Clock
from gateway.config import SensorConfig, SiteConfig
from stream.config import RuleRow
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
        teams: Sequence[TeamConfig] = (),
        rules: Sequence[RuleRow] = (),
        cases: CaseStoreConfig | None = None,
        notify: NotifyConfig | None = None,
        history: ReadingHistory | None = None,
    ) -> None:
        self._store = store
        self._sites = {s.id: s for s in sites}
        self._sensors = dict(sensors)
        self._routes = tuple(routes)
        self._clock = clock
        self._teams = {t.id: t for t in teams}
        self._auto_resolve = {r.id for r in rules if r.auto_resolve}
        self._cases = cases or CaseStoreConfig()
        self._notify = notify or NotifyConfig()
        self._history = history
        self.counts: Counter[str] = Counter()

    async def handle(self, alarm: Alarm) -> Outcome:
        now = self._clock.now()
        sensor = self._sensors.get((alarm.site, alarm.sensor))
        site = self._sites.get(alarm.site)
        facts = route_facts(
            site=alarm.site,
            sensor=alarm.sensor,
            condition=alarm.condition,
            severity=alarm.severity,
            config=sensor,
        )
        route = match(self._routes, facts, at=now, tz=site.timezone if site else "UTC")
        draft = draft_case(
            alarm,
            site=site,
            sensor=sensor,
            route=route,
            now=now,
            recent=self._history.recent(alarm.site, alarm.sensor) if self._history else (),
            sla=self._cases.sla.get(route.priority),
            auto_resolve=alarm.rule in self._auto_resolve,
        )
        plan = await self._plan(alarm, draft)
        outcome = await self._store.record_alarm(
            alarm, draft, plan, now=now, reopen_window=self._cases.reopen_window
        )
        self.counts[outcome.result] += 1
        if outcome.result in ("opened", "reopened") and outcome.case is not None:
            log.info("%s %s: %s → %s", outcome.result, outcome.case.id, draft.title, route.team)
        return outcome

    async def _plan(self, alarm: Alarm, draft: CaseDraft) -> OpenPlan:
        """Who hears about the case if this alarm opens it, and when escalation starts."""
        if alarm.state == "cleared":
            return OpenPlan()
        team = self._teams.get(draft.team)
        if team is None:
            return OpenPlan()
        now = self._clock.now()
        person = on_call(team, now)
        user = await self._store.get_user(person) if person else None
        # The case id is not known before the store assigns it; deliveries name it when sent.
        preview, _ = new_case(0, alarm, draft, OpenPlan(), now=now)
        preview = preview.model_copy(update={"id": PENDING_ID})
        deliveries = deliveries_for(
            preview, user=user, team=team, notify=self._notify, reason="opened"
        )
        escalate_at = (
            now + timedelta(seconds=team.escalation.after) if team.escalation.chain else None
        )
        return OpenPlan(deliveries=deliveries, next_escalation_at=escalate_at)
