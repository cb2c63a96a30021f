"""The case bridge: alarm → route → enrich → plan notifications → store (one transaction)."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta

from casebridge.config import CaseStoreConfig, NotifyConfig, RouteRow, TeamConfig
from casebridge.enrich import draft_case
from casebridge.history import ReadingHistory
from casebridge.models import Case, CaseDraft, DeliveryDraft, OpenPlan, User
from casebridge.people import deliveries_for, on_call
from casebridge.routing import match, route_facts
from casebridge.store import AlarmEntry, CaseStore, Outcome
from gateway.clock import Clock
from gateway.config import SensorConfig, SiteConfig
from stream.conditions import Vocabulary
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
        self._conditions = Vocabulary(rules)
        self._cases = cases or CaseStoreConfig()
        self._notify = notify or NotifyConfig()
        self._history = history
        self.counts: Counter[str] = Counter()
        #: outcomes by (condition, result), for the metrics
        self.by_condition: Counter[tuple[str, str]] = Counter()
        #: told of each alarm that opened or changed a case, with when it was recorded
        self.on_recorded: Callable[[Alarm, datetime], None] | None = None

    async def handle(self, alarm: Alarm) -> Outcome:
        (outcome,) = await self.handle_many([alarm])
        return outcome

    async def handle_many(self, alarms: Sequence[Alarm]) -> list[Outcome]:
        """Record a batch of alarms in order, in as few transactions as the store allows."""
        if not alarms:
            return []
        now = self._clock.now()
        on_duty = await self._on_duty(now)

        def entry(alarm: Alarm) -> AlarmEntry:
            def prepare() -> tuple[CaseDraft, OpenPlan]:
                draft = self._draft(alarm, now)
                return draft, self._plan(alarm, draft, now, on_duty)

            return AlarmEntry(alarm, prepare)

        outcomes = await self._store.record_alarms(
            [entry(a) for a in alarms], now=now, reopen_window=self._cases.reopen_window
        )
        for alarm, outcome in zip(alarms, outcomes, strict=True):
            self.counts[outcome.result] += 1
            self.by_condition[(alarm.condition, outcome.result)] += 1
            if self.on_recorded is not None and outcome.result != "duplicate":
                self.on_recorded(alarm, self._clock.now())
            case = outcome.case
            if outcome.result in ("opened", "reopened") and case is not None:
                log.info(
                    "%s %s: %s → %s",
                    outcome.result,
                    case.id,
                    case.draft.title,
                    case.team,
                    extra={"site": case.site, "sensor": case.sensor, "case": case.id,
                           "condition": case.condition},
                )  # fmt: skip
        return outcomes

    async def _on_duty(self, now: datetime) -> dict[str, User | None]:
        """Each team's on-call person now (None: nobody, or not a user): one lookup per person,
        however many teams they are on call for."""
        persons = {team.id: on_call(team, now) for team in self._teams.values()}
        users = {p: await self._store.get_user(p) for p in set(persons.values()) if p}
        return {team: users[p] if p else None for team, p in persons.items()}

    def _draft(self, alarm: Alarm, now: datetime) -> CaseDraft:
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
        return draft_case(
            alarm,
            site=site,
            sensor=sensor,
            route=route,
            now=now,
            recent=self._history.recent(alarm.site, alarm.sensor) if self._history else (),
            sla=self._cases.sla.get(route.priority),
            auto_resolve=alarm.rule in self._auto_resolve,
            conditions=self._conditions,
        )

    def _plan(
        self, alarm: Alarm, draft: CaseDraft, now: datetime, on_duty: dict[str, User | None]
    ) -> OpenPlan:
        """Who hears about the case if this alarm opens it, and when escalation starts."""
        team = self._teams.get(draft.team)
        if alarm.state == "cleared" or team is None:
            return OpenPlan()
        user, notify = on_duty.get(team.id), self._notify

        def deliveries(case: Case) -> tuple[DeliveryDraft, ...]:
            return deliveries_for(case, user=user, team=team, notify=notify, reason="opened")

        escalate_at = (
            now + timedelta(seconds=team.escalation.after) if team.escalation.chain else None
        )
        return OpenPlan(notify=deliveries, next_escalation_at=escalate_at)
