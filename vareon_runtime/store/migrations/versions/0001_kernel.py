"""The kernel's tables: the ``events`` journal."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision, down_revision = "0001_kernel", None
branch_labels, depends_on = ("kernel",), None


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.String(length=255), nullable=False),
        sa.Column("kind", sa.String(length=255), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
    )
    op.create_index("ix_events_source_time", "events", ["source", "time"])


def downgrade() -> None:
    op.drop_index("ix_events_source_time", table_name="events")
    op.drop_table("events")
