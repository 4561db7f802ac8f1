"""Accounts: ``users.token_epoch``, the sign-in generation every token carries (decision 0025)."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision, down_revision = "0004_users_token_epoch", "0003_telemetry"
branch_labels, depends_on = None, None


def upgrade() -> None:
    # Existing rows start at 0, the epoch of every token issued before this revision.
    with op.batch_alter_table("users") as batch:
        batch.add_column(
            sa.Column("token_epoch", sa.Integer(), server_default="0", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_column("token_epoch")
