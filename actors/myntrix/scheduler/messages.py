"""Messages of the scheduler's actors, and :class:`TaskSpec`, the task as they carry it.

To the scheduler actor (the ``scheduler`` child of the module), from the
:class:`~actors.myntrix.scheduler.tasks.Tasks` face: :class:`ScheduleTask` after a task was
created or changed (enabled or disabled included; it answers the next fire time, None when
disabled), :class:`UnscheduleTask` before a task is deleted, :class:`GetSchedule` (the next fire
time of every enabled task, for status pages and tests). None of them waits for the database.
"""

from __future__ import annotations

from vareon_runtime.messages import Message

from .schemas import TaskFields

__all__ = ["GetSchedule", "ScheduleTask", "TaskSpec", "UnscheduleTask"]


class TaskSpec(TaskFields):
    """A ``scheduled_tasks`` row as the scheduler and the runs use it (parameters in clear)."""


class ScheduleTask(Message):
    """The task was created or changed: (re)schedule it, or drop it when disabled."""

    task: TaskSpec


class UnscheduleTask(Message):
    """The task is being deleted: drop it. Answers whether it was scheduled."""

    task_id: str


class GetSchedule(Message):
    """Answer ``{task id: next fire time (aware UTC)}`` of every scheduled task."""
