"""Messages of the scheduler's actors, and :class:`TaskSpec`, the task as they carry it.

To the scheduler actor (the ``scheduler`` child of the module), from the
:class:`~actors.myntrix.scheduler.service.Tasks` face: :class:`ScheduleTask` after a task was
created or changed (enabled or disabled included; it answers the next fire time, None when
disabled), :class:`ScheduleTasks` after a bulk create (every task of it in one step),
:class:`UnscheduleTask` before a task is deleted, :class:`GetSchedule` (the next fire time of
every enabled task, for status pages and tests). None of them waits for the database.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import datetime
from types import MappingProxyType
from typing import Any

from vareon_runtime.messages import Message

from .schemas import MisfirePolicy, Overlap

__all__ = ["NO_PARAMETERS", "GetSchedule", "ScheduleTask", "ScheduleTasks", "TaskSpec", "UnscheduleTask"]

NO_PARAMETERS: Mapping[str, Any] = MappingProxyType({})
"""The parameters of every task that has none: one shared, read-only mapping."""


def _shared(text: str | None) -> str | None:
    # The values many tasks repeat ("*/5 * * * *", "api", "UTC", a creator's name) are kept once.
    return sys.intern(text) if type(text) is str else text


@dataclass(frozen=True, slots=True, eq=False)
class TaskSpec:
    """A ``scheduled_tasks`` row as the scheduler and the runs keep it (parameters in clear).

    The scheduler holds one for every enabled task as long as the task lives, so it is compact: a
    slotted object (no per-instance dict, no pydantic state), the strings many tasks repeat
    interned, one shared mapping for tasks without parameters (decision 0029). Times are aware
    UTC. The API's shape of a task is :class:`~actors.myntrix.scheduler.schemas.Task`.
    """

    id: str
    name: str
    schedule: str
    action: str
    parameters: Mapping[str, Any]
    enabled: bool
    timezone: str
    timeout: float | None
    overlap: Overlap
    misfire_policy: MisfirePolicy
    misfire_grace: float
    updated_at: datetime
    last_fire_at: datetime | None
    # Whose role counts for the task's outbound calls (decision 0024).
    created_by: str | None = None

    @classmethod
    def of(cls, row: Any) -> TaskSpec:
        """The spec of a ``scheduled_tasks`` row: an ORM record (in the store's worker thread) or
        a mapping of its columns."""
        get = row.get if isinstance(row, Mapping) else lambda name: getattr(row, name)
        parameters = get("parameters")
        return cls(
            id=get("id"),
            name=get("name"),
            schedule=_shared(get("schedule")),  # type: ignore[arg-type]
            action=_shared(get("action")),  # type: ignore[arg-type]
            parameters=parameters if parameters else NO_PARAMETERS,
            enabled=bool(get("enabled")),
            timezone=_shared(get("timezone")),  # type: ignore[arg-type]
            timeout=get("timeout"),
            overlap=Overlap(get("overlap")),
            misfire_policy=MisfirePolicy(get("misfire_policy")),
            misfire_grace=float(get("misfire_grace")),
            updated_at=get("updated_at"),
            last_fire_at=get("last_fire_at"),
            created_by=_shared(get("created_by")),
        )

    def as_dict(self) -> dict[str, Any]:
        """Every field by name (to build the wire shape from)."""
        return {name: getattr(self, name) for name in _FIELDS}


_FIELDS = tuple(field.name for field in fields(TaskSpec))


class ScheduleTask(Message):
    """The task was created or changed: (re)schedule it, or drop it when disabled."""

    task: TaskSpec


class ScheduleTasks(Message):
    """These tasks were just created (a bulk create): schedule the enabled ones, in one step.
    Answers how many were scheduled."""

    tasks: tuple[TaskSpec, ...]


class UnscheduleTask(Message):
    """The task is being deleted: drop it. Answers whether it was scheduled."""

    task_id: str


class GetSchedule(Message):
    """Answer ``{task id: next fire time (aware UTC)}`` of every scheduled task."""
