"""The case store's tables (SQLAlchemy Core). Changes here need an Alembic migration; a test
checks that the migrated database and these definitions agree."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    false,
)
from sqlalchemy.engine import Dialect

from casebridge.models import OPEN_STATUSES

__all__ = [
    "UtcText",
    "case_events",
    "case_photos",
    "cases",
    "deliveries",
    "metadata",
    "open_case",
    "readings",
    "sessions",
    "sign_in_failures",
    "sink_cases",
    "sinks",
    "tokens",
    "users",
]


class UtcText(TypeDecorator[datetime]):
    """Timestamps as fixed-width RFC 3339 UTC text: exact, sortable, the same on every dialect."""

    impl = String(32)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> str | None:
        if value is None:
            return None
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    def process_result_value(self, value: str | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return datetime.fromisoformat(value)  # written above: always UTC, with its Z


metadata = MetaData()

cases = Table(
    "cases",
    metadata,
    Column("number", Integer, primary_key=True, autoincrement=True),
    Column("site", String(64), nullable=False),
    Column("sensor", String(64), nullable=False),
    Column("condition", String(32), nullable=False),
    Column("status", String(16), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("team", String(64), nullable=False),
    Column("priority", String(4), nullable=False),
    Column("rule", String(64), nullable=False),
    Column("threshold", Float, nullable=False),
    Column("value", Float, nullable=False),
    Column("episode", String(200), nullable=False),
    Column("condition_active", Boolean, nullable=False),
    Column("opened_at", UtcText, nullable=False),
    Column("updated_at", UtcText, nullable=False),
    Column("draft", JSON, nullable=False),
    Column("assignee", String(64), nullable=True),
    Column("acknowledged_at", UtcText, nullable=True),
    Column("resolved_at", UtcText, nullable=True),
    Column("closed_at", UtcText, nullable=True),
    Column("escalation_level", Integer, nullable=False, server_default="0"),
    Column("next_escalation_at", UtcText, nullable=True),
    # +1 with every change (and every event) in the same transaction: what the sinks compare
    # with what they mirrored, so a change can never be committed without being mirrored.
    Column("version", Integer, nullable=False, server_default="0"),
)
open_case = cases.c.status.in_(OPEN_STATUSES)
Index(
    "one_open_case_per_condition",
    cases.c.site,
    cases.c.sensor,
    cases.c.condition,
    unique=True,
    sqlite_where=open_case,
    postgresql_where=open_case,
)
Index("cases_by_key", cases.c.site, cases.c.sensor, cases.c.condition, cases.c.number)
Index("cases_by_escalation", cases.c.next_escalation_at)
#: reports choose the cases opened in a period
Index("cases_by_opening", cases.c.opened_at)

case_events = Table(
    "case_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("case_number", Integer, ForeignKey("cases.number"), nullable=False, index=True),
    Column("at", UtcText, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("actor", String(128), nullable=False),
    Column("text", Text, nullable=False),
    Column("alarm_key", String(300), nullable=True, unique=True),
    #: the status the case went to (status changes, opening, reopening): what reports count
    Column("status", String(16), nullable=True),
    #: the photo a `photo` event attached
    Column("photo", String(32), nullable=True),
)

#: Photos attached to cases: re-encoded without metadata, with a server-made thumbnail, under a
#: random id (never a name from outside). In the database, so an attachment and its timeline
#: event are one transaction and a backup of the store holds the photos too.
case_photos = Table(
    "case_photos",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("case_number", Integer, ForeignKey("cases.number"), nullable=False, index=True),
    Column("caption", Text, nullable=False),
    Column("content_type", String(32), nullable=False),
    Column("width", Integer, nullable=False),
    Column("height", Integer, nullable=False),
    Column("size", Integer, nullable=False),
    Column("data", LargeBinary, nullable=False),
    Column("thumb", LargeBinary, nullable=False),
    Column("uploaded_by", String(64), nullable=False),
    Column("uploaded_at", UtcText, nullable=False),
)

users = Table(
    "users",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("email", String(320), nullable=True),
    Column("role", String(16), nullable=False),
    Column("created_at", UtcText, nullable=False),
    Column("password_hash", String(300), nullable=True),
    Column("language", String(8), nullable=False, server_default="en"),
)

tokens = Table(
    "tokens",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("user_id", String(64), ForeignKey("users.id"), nullable=False, index=True),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("label", String(200), nullable=False),
    Column("created_at", UtcText, nullable=False),
    Column("expires_at", UtcText, nullable=True),
)

#: Failed sign-ins per client address and per (user, address): counted atomically in the
#: store, so concurrent attempts and several server processes share one count.
sign_in_failures = Table(
    "sign_in_failures",
    metadata,
    Column("key", String(200), primary_key=True),
    Column("count", Integer, nullable=False),
    Column("last_at", UtcText, nullable=False),
)

sessions = Table(
    "sessions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("user_id", String(64), ForeignKey("users.id"), nullable=False, index=True),
    Column("session_hash", String(64), nullable=False, unique=True),
    Column("created_at", UtcText, nullable=False),
    Column("last_seen_at", UtcText, nullable=False),
    Column("expires_at", UtcText, nullable=False),
)

deliveries = Table(
    "deliveries",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("case_number", Integer, ForeignKey("cases.number"), nullable=False, index=True),
    Column("channel", String(16), nullable=False),
    Column("recipient", String(500), nullable=False),
    Column("subject", String(500), nullable=False),
    Column("body", Text, nullable=False),
    Column("reason", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", UtcText, nullable=False),
    Column("last_error", Text, nullable=True),
    Column("created_at", UtcText, nullable=False),
    Index("deliveries_due", "status", "next_attempt_at"),
)

#: Readings kept for people to see and export: a device's last reading per sensor and minute
#: (written in batches off the rule path), and every reading a person entered by hand
#: (`source` manual, `actor` who; `pending` until the rules have evaluated it).
readings = Table(
    "readings",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("site", String(64), nullable=False),
    Column("sensor", String(64), nullable=False),
    Column("kind", String(64), nullable=False),
    Column("unit", String(8), nullable=False),
    Column("ts", UtcText, nullable=False),
    Column("value", Float, nullable=False),
    Column("source", String(8), nullable=False),
    Column("actor", String(128), nullable=True),
    Column("pending", Boolean, nullable=False, server_default=false()),
    Index("readings_by_sensor", "site", "sensor", "ts", "source", unique=True),
    Index("readings_pending", "pending"),
)

#: Each sink's progress per case: which version of the case (and which of its events) the
#: external system holds, and when a failed mirror is tried again.
sink_cases = Table(
    "sink_cases",
    metadata,
    Column("sink", String(64), primary_key=True),
    Column("case_number", Integer, ForeignKey("cases.number"), primary_key=True),
    Column("synced_version", Integer, nullable=False),
    Column("synced_event", Integer, nullable=False),
    Column("remote_id", String(200), nullable=True),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", UtcText, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("updated_at", UtcText, nullable=False),
)

#: One row per sink: when it was first started (cases closed before then are not mirrored),
#: its change-tracking cursor back from the external system (a delta link), and whether that
#: system is down (seen by `husvakt sinks status` from another process).
sinks = Table(
    "sinks",
    metadata,
    Column("sink", String(64), primary_key=True),
    Column("adopted_at", UtcText, nullable=False),
    Column("cursor", Text, nullable=True),
    #: while the external system is unreachable or refusing: since when, and why
    Column("down_since", UtcText, nullable=True),
    Column("down_error", Text, nullable=True),
    Column("updated_at", UtcText, nullable=False),
)
