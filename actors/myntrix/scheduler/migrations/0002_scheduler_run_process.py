"""Scheduler: the process group a run started, so the next boot can stop it after a kill -9."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision, down_revision = "0002_scheduler_run_process", "0001_scheduler"
branch_labels, depends_on = None, None


def upgrade() -> None:
    with op.batch_alter_table("task_runs") as batch:
        batch.add_column(sa.Column("pid", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("process_create_time", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("task_runs") as batch:
        batch.drop_column("process_create_time")
        batch.drop_column("pid")
