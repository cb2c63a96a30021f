"""Sinks: a version on every case that each change bumps, and each sink's progress per case.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("cases") as batch:
        batch.add_column(sa.Column("version", sa.Integer, nullable=False, server_default="0"))
    op.create_table(
        "sink_cases",
        sa.Column("sink", sa.String(64), primary_key=True),
        sa.Column("case_number", sa.Integer, sa.ForeignKey("cases.number"), primary_key=True),
        sa.Column("synced_version", sa.Integer, nullable=False),
        sa.Column("synced_event", sa.Integer, nullable=False),
        sa.Column("remote_id", sa.String(200), nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", sa.String(32), nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("updated_at", sa.String(32), nullable=False),
    )
    op.create_table(
        "sinks",
        sa.Column("sink", sa.String(64), primary_key=True),
        sa.Column("adopted_at", sa.String(32), nullable=False),
        sa.Column("cursor", sa.Text, nullable=True),
        sa.Column("down_since", sa.String(32), nullable=True),
        sa.Column("down_error", sa.Text, nullable=True),
        sa.Column("updated_at", sa.String(32), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("sinks")
    op.drop_table("sink_cases")
    with op.batch_alter_table("cases") as batch:
        batch.drop_column("version")
