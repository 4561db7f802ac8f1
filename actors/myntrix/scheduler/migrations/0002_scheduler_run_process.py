"""Scheduler: the process group a run started, so the next boot can stop it after a kill -9.

Revision ID: 0002_scheduler_run_process
Revises: 0001_scheduler
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_scheduler_run_process"
down_revision: str | Sequence[str] | None = "0001_scheduler"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("task_runs") as batch:
        batch.add_column(sa.Column("pid", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("process_create_time", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("task_runs") as batch:
        batch.drop_column("process_create_time")
        batch.drop_column("pid")
