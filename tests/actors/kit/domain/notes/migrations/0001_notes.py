"""Notes: the ``notes`` table."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision, down_revision = "0001_notes", None
branch_labels, depends_on = ("notes",), "kernel"


def upgrade() -> None:
    op.create_table(
        "notes",
        sa.Column("id", sa.String(length=36), primary_key=True),
        sa.Column("title", sa.String(length=255), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("pinned", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("notes")
