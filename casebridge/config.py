"""Teams, the routing table and the case store, as configured."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from gateway.models import Slug

__all__ = ["ROUTE_ORDER", "CaseStoreConfig", "RouteRow", "TeamConfig", "routing_problems"]

#: Routing match fields from most to least specific.
ROUTE_ORDER = ("sensor", "room", "building", "site", "condition", "severity", "kind")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TeamConfig(_Frozen):
    id: Slug
    name: str
    members: tuple[str, ...] = ()


class RouteRow(_Frozen):
    """One row of the routing table: the matching fields (omitted = any) → team and priority.
    A row that names no field is the fallback; the table must have exactly one."""

    id: Slug
    site: Slug | None = None
    building: Slug | None = None
    room: Slug | None = None
    sensor: Slug | None = None
    condition: Slug | None = None
    severity: Literal["warning", "critical"] | None = None
    kind: Slug | None = None
    team: Slug
    priority: Literal["P1", "P2", "P3", "P4"] = "P3"

    def criteria(self) -> Mapping[str, str]:
        fields = {f: getattr(self, f) for f in ROUTE_ORDER}
        return {f: v for f, v in fields.items() if v is not None}


class CaseStoreConfig(_Frozen):
    """Where cases live. Only SQLite for now; a relative path is relative to the config file."""

    sqlite: Path = Field(default=Path("husvakt-cases.db"))


def routing_problems(
    routes: Sequence[RouteRow], teams: Sequence[TeamConfig]
) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """Unknown teams, duplicate ids, a missing fallback, and ambiguous rows.

    Every routing fact is single-valued, so two rows tie for a case only when they name the
    same fields with the same values: checking identical criteria finds every ambiguity.
    """
    team_ids = {t.id for t in teams}
    seen_ids: dict[str, int] = {}
    seen_criteria: dict[tuple[tuple[str, str], ...], int] = {}
    fallbacks = 0
    for i, row in enumerate(routes):
        if row.id in seen_ids:
            yield (
                ("routing", i, "id"),
                f"route id {row.id!r} is already used by routing[{seen_ids[row.id]}]",
            )
        seen_ids.setdefault(row.id, i)
        if row.team not in team_ids:
            yield ("routing", i, "team"), f"no team {row.team!r} in 'teams'"
        criteria = tuple(sorted(row.criteria().items()))
        if not criteria:
            fallbacks += 1
        if criteria in seen_criteria:
            yield (
                ("routing", i),
                f"matches exactly what routing[{seen_criteria[criteria]}] matches (ambiguous)",
            )
        seen_criteria.setdefault(criteria, i)
    if routes and fallbacks == 0:
        yield ("routing",), "the routing table needs a fallback row (one that names no match field)"
    if not routes:
        yield ("routing",), "the routing table is empty; add at least a fallback row with a team"
