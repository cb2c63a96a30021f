"""Readings kept for the site page, meter charts and export, and readings entered by hand.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "readings",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("site", sa.String(64), nullable=False),
        sa.Column("sensor", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("unit", sa.String(8), nullable=False),
        sa.Column("ts", sa.String(32), nullable=False),
        sa.Column("value", sa.Float, nullable=False),
        sa.Column("source", sa.String(8), nullable=False),
        sa.Column("actor", sa.String(128), nullable=True),
        sa.Column("pending", sa.Boolean, nullable=False, server_default=sa.false()),
    )
    op.create_index(
        "readings_by_sensor", "readings", ["site", "sensor", "ts", "source"], unique=True
    )
    op.create_index("readings_pending", "readings", ["pending"])


def downgrade() -> None:
    op.drop_index("readings_pending", "readings")
    op.drop_index("readings_by_sensor", "readings")
    op.drop_table("readings")
