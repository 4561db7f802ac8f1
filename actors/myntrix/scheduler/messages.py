"""Messages of the scheduler's actors, and :class:`TaskSpec`, the task as they carry it.

To the scheduler actor (the ``scheduler`` child of the module), from the
:class:`~actors.myntrix.scheduler.tasks.Tasks` face: :class:`ScheduleTask` after a task was
created or changed (enabled or disabled included; it answers the next fire time, None when
disabled), :class:`UnscheduleTask` before a task is deleted, :class:`GetSchedule` (the next fire
time of every enabled task, for status pages and tests). None of them waits for the database.

To the module (``scheduler`` in the registry): :class:`GetTasks` answers the face.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from vareon_runtime.messages import Message

from .schemas import MisfirePolicy, Overlap

__all__ = ["GetSchedule", "GetTasks", "ScheduleTask", "TaskSpec", "UnscheduleTask"]


class TaskSpec(BaseModel):
    """A ``scheduled_tasks`` row as the scheduler and the runs use it (parameters in clear)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    name: str
    schedule: str
    action: str
    parameters: dict[str, Any]
    enabled: bool
    timezone: str
    timeout: float | None
    overlap: Overlap
    misfire_policy: MisfirePolicy
    misfire_grace: float
    updated_at: datetime
    last_fire_at: datetime | None


class ScheduleTask(Message):
    """The task was created or changed: (re)schedule it, or drop it when disabled."""

    task: TaskSpec


class UnscheduleTask(Message):
    """The task is being deleted: drop it. Answers whether it was scheduled."""

    task_id: str


class GetSchedule(Message):
    """Answer ``{task id: next fire time (aware UTC)}`` of every scheduled task."""


class GetTasks(Message):
    """Answer the module's :class:`~actors.myntrix.scheduler.tasks.Tasks` face."""
