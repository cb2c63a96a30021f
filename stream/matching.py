"""Pure "most specific row wins" matching, shared by the rule table and the routing table.

A row's criteria are field → wanted value; a row matches when every criterion equals the fact
(or, for a set-valued fact such as tags, is in it). Specificity compares which fields a row
names, in the table's order of importance: a row naming the sensor beats one naming the room,
which beats one naming only the kind. Rows tied for most specific are ambiguous.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol, TypeVar

__all__ = ["Facts", "Row", "best_rows", "matches", "specificity"]

Facts = Mapping[str, str | frozenset[str] | None]


class Row(Protocol):
    def criteria(self) -> Mapping[str, str]: ...


R = TypeVar("R", bound=Row)


def matches(criteria: Mapping[str, str], facts: Facts) -> bool:
    for field, wanted in criteria.items():
        have = facts.get(field)
        if isinstance(have, frozenset):
            if wanted not in have:
                return False
        elif have != wanted:
            return False
    return True


def specificity(criteria: Mapping[str, str], order: Sequence[str]) -> tuple[int, ...]:
    return tuple(int(field in criteria) for field in order)


def best_rows(rows: Iterable[R], facts: Facts, order: Sequence[str]) -> list[R]:
    """Every matching row tied for most specific (one row unless the table is ambiguous)."""
    best: list[R] = []
    best_key: tuple[int, ...] | None = None
    for row in rows:
        criteria = row.criteria()
        if not matches(criteria, facts):
            continue
        key = specificity(criteria, order)
        if best_key is None or key > best_key:
            best, best_key = [row], key
        elif key == best_key:
            best.append(row)
    return best
