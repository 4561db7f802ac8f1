"""Scheduler: ``scheduled_tasks`` and their runs, ``task_runs``."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

# After the kernel's branch, as the myntrix branch does. No table here references another
# branch's (task_runs.job_id names a jobs row without a foreign key).
revision, down_revision = "0001_scheduler", None
branch_labels, depends_on = ("scheduler",), "kernel"


def upgrade() -> None:
    op.create_table(
        "scheduled_tasks",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("schedule", sa.String(length=255), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("parameters", sa.JSON(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("timeout", sa.Float(), nullable=True),
        sa.Column("overlap", sa.String(length=8), nullable=False),
        sa.Column("misfire_policy", sa.String(length=16), nullable=False),
        sa.Column("misfire_grace", sa.Float(), nullable=False),
        sa.Column("created_by", sa.String(length=255), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_fire_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scheduled_tasks")),
    )
    op.create_index("ix_scheduled_tasks_created_at", "scheduled_tasks", ["created_at"])
    op.create_table(
        "task_runs",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("task_id", sa.String(length=36), nullable=False),
        sa.Column("scheduled_for", sa.DateTime(timezone=True), nullable=True),
        sa.Column("start_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("end_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("trigger", sa.String(length=8), nullable=False),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("http_status", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("logs", sa.Text(), nullable=True),
        sa.Column("job_id", sa.String(length=36), nullable=True),
        sa.ForeignKeyConstraint(
            ["task_id"],
            ["scheduled_tasks.id"],
            name=op.f("fk_task_runs_task_id_scheduled_tasks"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_task_runs")),
    )
    op.create_index("ix_task_runs_task_id_start_time", "task_runs", ["task_id", "start_time"])
    op.create_index("ix_task_runs_start_time", "task_runs", ["start_time"])
    op.create_index("ix_task_runs_status", "task_runs", ["status"])


def downgrade() -> None:
    op.drop_index("ix_task_runs_status", table_name="task_runs")
    op.drop_index("ix_task_runs_start_time", table_name="task_runs")
    op.drop_index("ix_task_runs_task_id_start_time", table_name="task_runs")
    op.drop_table("task_runs")
    op.drop_index("ix_scheduled_tasks_created_at", table_name="scheduled_tasks")
    op.drop_table("scheduled_tasks")
