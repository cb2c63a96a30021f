"""Initial schema: cases, case events, users, tokens, the notification outbox.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from casebridge.store.schema import UtcText

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

OPEN = "status IN ('new', 'acknowledged', 'in_progress', 'reopened')"


def upgrade() -> None:
    op.create_table(
        "cases",
        sa.Column("number", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("site", sa.String(64), nullable=False),
        sa.Column("sensor", sa.String(64), nullable=False),
        sa.Column("condition", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("team", sa.String(64), nullable=False),
        sa.Column("priority", sa.String(4), nullable=False),
        sa.Column("rule", sa.String(64), nullable=False),
        sa.Column("threshold", sa.Float, nullable=False),
        sa.Column("value", sa.Float, nullable=False),
        sa.Column("episode", sa.String(200), nullable=False),
        sa.Column("condition_active", sa.Boolean, nullable=False),
        sa.Column("opened_at", UtcText, nullable=False),
        sa.Column("updated_at", UtcText, nullable=False),
        sa.Column("draft", sa.JSON, nullable=False),
        sa.Column("assignee", sa.String(64), nullable=True),
        sa.Column("acknowledged_at", UtcText, nullable=True),
        sa.Column("resolved_at", UtcText, nullable=True),
        sa.Column("closed_at", UtcText, nullable=True),
        sa.Column("escalation_level", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_escalation_at", UtcText, nullable=True),
    )
    op.create_index(
        "one_open_case_per_condition",
        "cases",
        ["site", "sensor", "condition"],
        unique=True,
        sqlite_where=sa.text(OPEN),
        postgresql_where=sa.text(OPEN),
    )
    op.create_index("cases_by_key", "cases", ["site", "sensor", "condition", "number"])
    op.create_index("cases_by_escalation", "cases", ["next_escalation_at"])
    op.create_table(
        "case_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("case_number", sa.Integer, sa.ForeignKey("cases.number"), nullable=False),
        sa.Column("at", UtcText, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("alarm_key", sa.String(300), nullable=True, unique=True),
    )
    op.create_index("ix_case_events_case_number", "case_events", ["case_number"])
    op.create_table(
        "users",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("email", sa.String(320), nullable=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("created_at", UtcText, nullable=False),
    )
    op.create_table(
        "tokens",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("user_id", sa.String(64), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("label", sa.String(200), nullable=False),
        sa.Column("created_at", UtcText, nullable=False),
    )
    op.create_index("ix_tokens_user_id", "tokens", ["user_id"])
    op.create_table(
        "deliveries",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("case_number", sa.Integer, sa.ForeignKey("cases.number"), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("recipient", sa.String(500), nullable=False),
        sa.Column("subject", sa.String(500), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("reason", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", UtcText, nullable=False),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("created_at", UtcText, nullable=False),
    )
    op.create_index("ix_deliveries_case_number", "deliveries", ["case_number"])
    op.create_index("deliveries_due", "deliveries", ["status", "next_attempt_at"])


def downgrade() -> None:
    for table in ("deliveries", "tokens", "users", "case_events", "cases"):
        op.drop_table(table)
