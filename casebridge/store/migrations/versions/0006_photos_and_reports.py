"""Photos on cases, and the status each timeline event led to (what reports count), and an
index on when cases were opened (what reports choose by).

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_STATUSES = ("new", "acknowledged", "in_progress", "resolved", "closed", "reopened")


def upgrade() -> None:
    with op.batch_alter_table("case_events") as batch:
        batch.add_column(sa.Column("status", sa.String(16), nullable=True))
        batch.add_column(sa.Column("photo", sa.String(32), nullable=True))
    op.create_table(
        "case_photos",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("case_number", sa.Integer, sa.ForeignKey("cases.number"), nullable=False),
        sa.Column("caption", sa.Text, nullable=False),
        sa.Column("content_type", sa.String(32), nullable=False),
        sa.Column("width", sa.Integer, nullable=False),
        sa.Column("height", sa.Integer, nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
        sa.Column("thumb", sa.LargeBinary, nullable=False),
        sa.Column("uploaded_by", sa.String(64), nullable=False),
        sa.Column("uploaded_at", sa.String(32), nullable=False),
    )
    op.create_index("ix_case_photos_case_number", "case_photos", ["case_number"])
    op.create_index("cases_by_opening", "cases", ["opened_at"])
    # the events written before: opening is "new", reopening "reopened", and a status change's
    # text says "<from> → <to>…" (no status name is the start of another)
    events = sa.table(
        "case_events", sa.column("kind", sa.String), sa.column("text"), sa.column("status")
    )
    op.execute(events.update().where(events.c.kind == "opened").values(status="new"))
    op.execute(events.update().where(events.c.kind == "reopened").values(status="reopened"))
    for status in _STATUSES:
        op.execute(
            events.update()
            .where(
                events.c.kind == "status_changed",
                events.c.status.is_(None),
                events.c.text.like(f"% → {status}%"),
            )
            .values(status=status)
        )


def downgrade() -> None:
    op.drop_index("cases_by_opening", "cases")
    op.drop_index("ix_case_photos_case_number", "case_photos")
    op.drop_table("case_photos")
    with op.batch_alter_table("case_events") as batch:
        batch.drop_column("photo")
        batch.drop_column("status")
