"""Pure routing: which team gets a case, and which row of the table said so."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from casebridge.config import ROUTE_ORDER, RouteRow
from casebridge.errors import RoutingError
from gateway.config import SensorConfig
from stream.matching import Facts, best_rows, matches, specificity

__all__ = ["Explanation", "explain", "match", "route_facts"]

log = logging.getLogger("husvakt.casebridge.routing")


def route_facts(
    *, site: str, sensor: str, condition: str, severity: str, config: SensorConfig | None
) -> Facts:
    """What routing rows can match on for a case (the sensor's registry entry adds where)."""
    return {
        "site": site,
        "sensor": sensor,
        "condition": condition,
        "severity": severity,
        "kind": config.kind if config else None,
        "building": config.building if config else None,
        "room": config.room if config else None,
    }


def _in_window(routes: Sequence[RouteRow], at: datetime, tz: str) -> list[RouteRow]:
    local = at.astimezone(ZoneInfo(tz))
    return [r for r in routes if r.in_window(local)]


def match(routes: Sequence[RouteRow], facts: Facts, *, at: datetime, tz: str = "UTC") -> RouteRow:
    """The most specific matching row whose time window (if any) contains `at`."""
    best = best_rows(_in_window(routes, at, tz), {**facts, "window": "in"}, ROUTE_ORDER)
    if not best:
        raise RoutingError(f"no routing row matches {dict(facts)}; add a fallback row")
    if len(best) > 1:
        # Only rows with different but overlapping windows can tie (identical rows are a
        # config error); the first in the table wins, as a manager reading it top-down expects.
        log.warning(
            "routing rows %s tie for %s; using %s", [r.id for r in best], dict(facts), best[0].id
        )
    return best[0]


@dataclass(frozen=True)
class Explanation:
    """The winning row, and for every row whether it matched and why not."""

    chosen: RouteRow
    rows: tuple[tuple[RouteRow, str], ...]


def explain(
    routes: Sequence[RouteRow], facts: Facts, *, at: datetime, tz: str = "UTC"
) -> Explanation:
    chosen = match(routes, facts, at=at, tz=tz)
    in_window = {id(r) for r in _in_window(routes, at, tz)}
    window_facts = {**facts, "window": "in"}
    notes = []
    for row in routes:
        criteria = row.criteria()
        if id(row) not in in_window:
            why = "outside its time window"
        elif not matches(criteria, window_facts):
            misses = [
                f"{k}={v}" for k, v in criteria.items() if k != "window" and facts.get(k) != v
            ]
            why = "does not match " + ", ".join(misses)
        elif row is chosen:
            why = "CHOSEN: the most specific matching row"
        elif specificity(criteria, ROUTE_ORDER) == specificity(chosen.criteria(), ROUTE_ORDER):
            why = "ties with the chosen row (overlapping windows); the earlier row wins"
        else:
            why = "matches, but is less specific"
        named = [f for f in ROUTE_ORDER if specificity(criteria, ROUTE_ORDER)[ROUTE_ORDER.index(f)]]
        notes.append((row, f"{why} (names: {', '.join(named) or 'nothing — fallback'})"))
    return Explanation(chosen=chosen, rows=tuple(notes))
