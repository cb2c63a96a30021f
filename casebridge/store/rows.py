"""Rows and values of the case store's tables, and the SQL both dialects need said their own
way (lists as one bound value, row locks, which errors mean a lost race)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ARRAY,
    ColumnElement,
    Select,
    String,
    any_,
    bindparam,
    func,
    select,
)
from sqlalchemy.exc import (
    IntegrityError,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from casebridge.models import (
    Case,
    CaseDraft,
    CaseEvent,
    DeliveryDraft,
    User,
    format_case_id,
)

__all__ = [
    "RACE_RETRIES",
    "RETRYABLE_SQLSTATES",
    "among",
    "case_from_row",
    "case_values",
    "changed_columns",
    "delivery_values",
    "event_from_row",
    "event_values",
    "for_update",
    "raced",
    "user_from_row",
]


def case_from_row(row: Any) -> Case:
    return Case(
        id=format_case_id(row.opened_at.year, row.number),
        site=row.site,
        sensor=row.sensor,
        condition=row.condition,
        status=row.status,
        severity=row.severity,
        rule=row.rule,
        threshold=row.threshold,
        value=row.value,
        episode=row.episode,
        condition_active=row.condition_active,
        opened_at=row.opened_at,
        updated_at=row.updated_at,
        draft=CaseDraft.model_validate(row.draft),
        assignee=row.assignee,
        acknowledged_at=row.acknowledged_at,
        resolved_at=row.resolved_at,
        closed_at=row.closed_at,
        escalation_level=row.escalation_level,
        next_escalation_at=row.next_escalation_at,
    )


def event_values(number: int, event: CaseEvent, alarm_key: str | None = None) -> dict[str, Any]:
    """A timeline event as the values of its `case_events` row."""
    return {
        "case_number": number,
        "at": event.at,
        "kind": event.kind,
        "actor": event.actor,
        "text": event.text,
        "alarm_key": alarm_key,
        "status": event.status,
        "photo": event.photo,
    }


def event_from_row(case_id: str, row: Any) -> CaseEvent:
    return CaseEvent(
        case_id=case_id,
        at=row.at,
        kind=row.kind,
        actor=row.actor,
        text=row.text,
        cursor=row.id,
        status=row.status,
        photo=row.photo,
    )


def changed_columns(before: Case, after: Case) -> set[str]:
    """The columns of `cases` that differ between two states of one case."""
    fields = {f for f in Case.model_fields if getattr(before, f) != getattr(after, f)} - {"id"}
    return fields | {"team", "priority"} if "draft" in fields else fields


def case_values(case: Case, columns: set[str] | None = None) -> dict[str, Any]:
    """A case as the row's values (only `columns`, when given)."""
    if columns is not None:
        row = {c: getattr(case, c) for c in columns if c not in ("draft", "team", "priority")}
        if "draft" in columns:
            row |= {
                "draft": case.draft.model_dump(mode="json"),
                "team": case.draft.team,
                "priority": case.draft.priority,
            }
        return row
    return {
        "site": case.site,
        "sensor": case.sensor,
        "condition": case.condition,
        "status": case.status,
        "severity": case.severity,
        "team": case.draft.team,
        "priority": case.draft.priority,
        "rule": case.rule,
        "threshold": case.threshold,
        "value": case.value,
        "episode": case.episode,
        "condition_active": case.condition_active,
        "opened_at": case.opened_at,
        "updated_at": case.updated_at,
        "draft": case.draft.model_dump(mode="json"),
        "assignee": case.assignee,
        "acknowledged_at": case.acknowledged_at,
        "resolved_at": case.resolved_at,
        "closed_at": case.closed_at,
        "escalation_level": case.escalation_level,
        "next_escalation_at": case.next_escalation_at,
    }


#: How often a transaction that lost a race is tried again.
RACE_RETRIES = 8

#: PostgreSQL's "deadlock detected" and "could not serialize": the transaction may be retried.
RETRYABLE_SQLSTATES = frozenset({"40P01", "40001"})


def raced(exc: Exception) -> bool:
    """Whether `exc` means another writer got there first (retry reads its commit)."""
    if isinstance(exc, IntegrityError):
        return True
    return getattr(getattr(exc, "orig", None), "sqlstate", None) in RETRYABLE_SQLSTATES


def among(conn: AsyncConnection, column: ColumnElement[Any], values: list[Any]) -> Any:
    """`column IN values` with the list as one bound value (an array on PostgreSQL, JSON on
    SQLite): one statement whatever the list's length, instead of a parameter per value."""
    if conn.dialect.name == "postgresql":
        return column == any_(bindparam(None, values, type_=ARRAY(column.type)))
    each = func.json_each(bindparam(None, json.dumps(values), type_=String)).table_valued("value")
    return column.in_(select(each.c.value))


def for_update(conn: AsyncConnection, query: Select[Any]) -> Select[Any]:
    """On PostgreSQL, lock the rows read (in the query's order, so two writers cannot deadlock
    over them) until the transaction ends: a concurrent writer waits, then reads the commit."""
    return query.with_for_update() if conn.dialect.name == "postgresql" else query


def delivery_values(number: int, d: DeliveryDraft, now: datetime) -> dict[str, Any]:
    return {
        "case_number": number,
        "channel": d.channel,
        "recipient": d.recipient,
        "subject": d.subject,
        "body": d.body,
        "reason": d.reason,
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
    }


def user_from_row(row: Any) -> User:
    return User(id=row.id, name=row.name, email=row.email, role=row.role, language=row.language)
