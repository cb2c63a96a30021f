"""Pure routing: which team gets a case, and which row of the table said so."""

from __future__ import annotations

from collections.abc import Sequence

from casebridge.config import ROUTE_ORDER, RouteRow
from casebridge.errors import RoutingError
from stream.matching import Facts, best_rows

__all__ = ["match"]


def match(routes: Sequence[RouteRow], facts: Facts) -> RouteRow:
    """The most specific matching row. The config loader guarantees a fallback row and no ties."""
    best = best_rows(routes, facts, ROUTE_ORDER)
    if not best:
        raise RoutingError(f"no routing row matches {dict(facts)}; add a fallback row")
    return best[0]
