"""The scheduler's tables: ``scheduled_tasks`` and their runs, ``task_runs``.

They live on the kernel's :class:`~vareon_runtime.store.Base`; their migration is the revision
``0001_scheduler`` on the ``scheduler`` branch (``actors/myntrix/scheduler/migrations``).

A task's ``timezone`` and ``misfire_grace`` are resolved when it is created (the config's
``[myntrix] scheduler_timezone`` and ``task_misfire_grace`` when the request names none), so a
later change of ``config.toml`` never moves the fire times of tasks that exist.

Runs belong to their task: deleting a task deletes its runs (``ON DELETE CASCADE``, and the
face deletes them explicitly too, as SQLite enforces the key only where foreign keys are on).
What ran stays visible in ``jobs`` (type ``task.run``), which is not pruned with the task. A
task keeps its newest ``task_runs_keep`` runs: the kit's recorder prunes the older ones
(:data:`TASK_RUNS` tells it how the table is laid out). ``status`` holds a
:class:`~actors.kit.states.RunState` value.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from actors.kit.recorder import RunTable
from vareon_runtime.clock import utcnow
from vareon_runtime.store.models import Base, UTCDateTime


__all__ = ["TASK_RUNS", "ScheduledTaskRecord", "TaskRunRecord"]

class ScheduledTaskRecord(Base):
    """One scheduled task: when it fires (``schedule`` in ``timezone``) and what it does
    (``action``, the kind, with its ``parameters``)."""

    __tablename__ = "scheduled_tasks"
    __table_args__ = (Index("ix_scheduled_tasks_created_at", "created_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    schedule: Mapped[str] = mapped_column(String(255))
    action: Mapped[str] = mapped_column(String(64))
    # The action's parameters as validated, snake_case or camelCase keys, secrets in clear: the
    # wire shows them masked (ActionParameters.masked).
    parameters: Mapped[dict[str, Any]] = mapped_column(JSON)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    timezone: Mapped[str] = mapped_column(String(64))
    # Seconds a run may take before it is cancelled (status timeout); NULL: no limit.
    timeout: Mapped[float | None] = mapped_column(Float, nullable=True)
    # skip | allow: may a run start while the previous one is still running?
    overlap: Mapped[str] = mapped_column(String(8), default="skip")
    # skip | run_once: what a fire time missed while the runtime was down becomes.
    misfire_policy: Mapped[str] = mapped_column(String(16), default="run_once")
    misfire_grace: Mapped[float] = mapped_column(Float)
    created_by: Mapped[str | None] = mapped_column(String(255), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # The last fire time the scheduler handled (ran, skipped or let pass): after downtime the
    # fire times between it and now are the misfires.
    last_fire_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    def __repr__(self) -> str:
        return f"ScheduledTaskRecord(id={self.id!r}, name={self.name!r}, schedule={self.schedule!r})"


class TaskRunRecord(Base):
    """One run of a task (or one fire time skipped, with the reason in ``error``)."""

    __tablename__ = "task_runs"
    __table_args__ = (
        Index("ix_task_runs_task_id_start_time", "task_id", "start_time"),
        Index("ix_task_runs_start_time", "start_time"),
        Index("ix_task_runs_status", "status"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    task_id: Mapped[str] = mapped_column(String(36), ForeignKey("scheduled_tasks.id", ondelete="CASCADE"))
    # The fire time this run is for; NULL for a run started by hand.
    scheduled_for: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    start_time: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    end_time: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # A RunState value: running | succeeded | failed | timeout | skipped | cancelled
    status: Mapped[str] = mapped_column(String(16))
    # cron | manual
    trigger: Mapped[str] = mapped_column(String(8))
    exit_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    http_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    # The tail of what the action logged (at most SchedulerSettings.log_max characters).
    logs: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Its row in jobs (not a foreign key: jobs are kept and pruned on their own terms).
    job_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    # The process group a script run started: its leader's pid and psutil creation time, which
    # together identify it, so the boot after a kill -9 stops what the run left running.
    pid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    process_create_time: Mapped[float | None] = mapped_column(Float, nullable=True)

    def __repr__(self) -> str:
        return f"TaskRunRecord(id={self.id!r}, task_id={self.task_id!r}, status={self.status!r})"


TASK_RUNS = RunTable(
    table=TaskRunRecord.__table__,  # type: ignore[arg-type]
    owner=TaskRunRecord.__table__.c.task_id,
    owners=ScheduledTaskRecord.__table__,  # type: ignore[arg-type]
    newest=(TaskRunRecord.__table__.c.start_time, TaskRunRecord.__table__.c.id),
    changes=("end_time", "status", "exit_code", "http_status", "error", "logs", "pid", "process_create_time"),
    identity=("pid", "process_create_time"),
)
"""How the kit's recorder writes, prunes and recovers task runs."""
