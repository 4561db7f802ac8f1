"""Wire shapes of scheduled tasks and their runs (seed 001, Task Scheduling: camelCase on the wire).

Every model reads both spellings (``misfirePolicy`` and ``misfire_policy``) and the web front
writes the camelCase aliases. Record times go out as ISO 8601 in UTC with a ``Z``; the coming
fire times (``nextRun``, ``nextRuns``) go out in the task's own zone with its offset
(``2024-10-27T02:30:00+02:00``), so the user sees the wall times asked for; a task in UTC gets a
``Z`` there too.

A run's status is seed 001's word for its :class:`~actors.kit.states.RunState`
(:data:`TASK_RUN_WORDS`): ``success`` for a run that went well (``succeeded``, its former
spelling, is still read).
"""

from __future__ import annotations

import enum
from typing import Any

from pydantic import ConfigDict, Field

from actors.kit.states import RunState, Words
from actors.kit.wire import CamelModel, LocalTimestamp, Name, Timestamp

__all__ = [
    "BULK_MAX",
    "MAX_MISFIRE_GRACE",
    "MAX_TIMEOUT",
    "NEXT_RUNS",
    "TASK_RUN_WORDS",
    "MisfirePolicy",
    "Overlap",
    "RunStatus",
    "RunTrigger",
    "Task",
    "TaskBulkCreate",
    "TaskBulkCreated",
    "TaskCreate",
    "TaskFields",
    "TaskRun",
    "TaskUpdate",
]

MAX_TIMEOUT = 7 * 86400.0
"""Longest run timeout a task may set, seconds (a week)."""

MAX_MISFIRE_GRACE = 7 * 86400.0
"""Longest misfire grace a task may set, seconds (a week)."""

NEXT_RUNS = 5
"""Coming fire times listed in ``nextRuns``."""

BULK_MAX = 10_000
"""Most tasks one bulk create takes (``POST /api/myntrix/tasks/bulk``); the body must also fit
``[server] max_body_size``."""

class Overlap(str, enum.Enum):
    """May a run start while the task's previous run is still running?"""

    SKIP = "skip"  # no: the fire time is recorded as a skipped run, saying why
    ALLOW = "allow"  # yes


class MisfirePolicy(str, enum.Enum):
    """What fire times missed while the runtime was down (or the clock jumped) become."""

    SKIP = "skip"  # nothing runs; one skipped run says what was missed
    RUN_ONCE = "run_once"  # one run, if the latest missed time is within misfireGrace


TASK_RUN_WORDS = Words(
    "RunStatus",
    {
        RunState.PENDING: "pending",
        RunState.RUNNING: "running",
        RunState.SUCCEEDED: "success",
        RunState.FAILED: "failed",
        RunState.TIMEOUT: "timeout",
        RunState.SKIPPED: "skipped",
        RunState.CANCELLED: "cancelled",
    },
    former={"succeeded": "success"},
    module=__name__,
)
"""Task runs' words for the run states (seed 001's, and ``timeout``, ``skipped``, ``cancelled``)."""

RunStatus = TASK_RUN_WORDS.enum
"""Where a run is. ``skipped``: the fire time did not run (overlap or misfire), ``error`` says
why."""


class RunTrigger(str, enum.Enum):
    """What started a run."""

    CRON = "cron"
    MANUAL = "manual"


_NAME = Field(description="What the task is called.")
_SCHEDULE = Field(
    min_length=1,
    max_length=255,
    description="A cron expression of five fields (minute hour day-of-month month day-of-week) or @daily and kin.",
    examples=["*/5 * * * *", "30 2 * * *"],
)
_ACTION = Field(min_length=1, max_length=64, description="The action's kind: script, api, agent.", examples=["script"])
_TIMEZONE = Field(
    None, min_length=1, max_length=64, description="IANA zone of the schedule; the runtime's default when absent."
)
_TIMEOUT = Field(
    None, gt=0, le=MAX_TIMEOUT, description="Seconds a run may take before it is cancelled (status timeout); none when absent."
)
_GRACE = Field(
    None,
    ge=0,
    le=MAX_MISFIRE_GRACE,
    description="Seconds after a missed fire time within which run_once still runs it; the runtime's default when absent.",
)


class TaskCreate(CamelModel):
    """``POST /api/myntrix/tasks``."""

    name: Name = _NAME
    schedule: str = _SCHEDULE
    action: str = _ACTION
    parameters: dict[str, Any] = Field(default_factory=dict, description="The action's parameters.")
    enabled: bool = Field(True, description="Whether the schedule fires.")
    timezone: str | None = _TIMEZONE
    timeout: float | None = _TIMEOUT
    overlap: Overlap = Field(Overlap.SKIP, description="skip or allow a run while the previous one still runs.")
    misfire_policy: MisfirePolicy = Field(MisfirePolicy.RUN_ONCE, description="skip or run_once after downtime.")
    misfire_grace: float | None = _GRACE


class TaskBulkCreate(CamelModel):
    """``POST /api/myntrix/tasks/bulk``: tasks created together, all or none."""

    tasks: list[TaskCreate] = Field(
        min_length=1,
        max_length=BULK_MAX,
        description=(
            f"The tasks, each as for `POST /api/myntrix/tasks`: 1 to {BULK_MAX}, within the body limit"
            " (`[server] max_body_size`, 1 MiB by default: about 8,000 tasks of 120 bytes)."
        ),
    )


class TaskBulkCreated(CamelModel):
    """What a bulk create made: the new tasks' ids, in the order they were given."""

    count: int = Field(description="How many tasks were created.")
    ids: list[str] = Field(description="The new tasks' ids, in the order of the request's `tasks`.")


class TaskUpdate(CamelModel):
    """``PUT /api/myntrix/tasks/{id}``: the fields given are changed (``{"enabled": false}``
    alone disables). ``timeout: null`` removes the timeout; other nulls change nothing."""

    name: Name | None = None
    schedule: str | None = Field(None, min_length=1, max_length=255)
    action: str | None = Field(None, min_length=1, max_length=64)
    parameters: dict[str, Any] | None = None
    enabled: bool | None = None
    timezone: str | None = _TIMEZONE
    timeout: float | None = _TIMEOUT
    overlap: Overlap | None = None
    misfire_policy: MisfirePolicy | None = None
    misfire_grace: float | None = _GRACE


class TaskFields(CamelModel):
    """What a task is, as stored, as the API shows it (:class:`Task`, parameters masked); the
    scheduler keeps the same fields in a compact :class:`~actors.myntrix.scheduler.messages.TaskSpec`
    (parameters in clear)."""

    model_config = ConfigDict(frozen=True)

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
    updated_at: Timestamp
    last_fire_at: Timestamp | None = Field(description="The last fire time the scheduler handled.")
    # Whose role counts for the task's outbound calls (decision 0024); the API shows it as Task's.
    created_by: str | None = Field(None, description="Who created the task (a username); null when the runtime did.")


class Task(TaskFields):
    """One scheduled task as the API shows it (parameters with secrets masked)."""

    created_by: str | None
    created_at: Timestamp
    last_run: Timestamp | None = Field(description="When the latest run started (or was skipped).")
    last_status: RunStatus | None
    next_run: LocalTimestamp | None = Field(description="The next fire time, in the task's zone; null when disabled.")
    next_runs: list[LocalTimestamp] = Field(description=f"The next {NEXT_RUNS} fire times; empty when disabled.")


class TaskRun(CamelModel):
    """One run of a task (``GET /api/myntrix/tasks/history``, ``POST /api/myntrix/tasks/{id}/run``)."""

    model_config = ConfigDict(frozen=True)

    id: str
    task_id: str
    start_time: Timestamp
    end_time: Timestamp | None
    status: RunStatus
    logs: str | None = Field(description="The tail of what the action logged, newline-separated.")
    trigger: RunTrigger
    scheduled_for: Timestamp | None = Field(description="The fire time this run is for; null when run by hand.")
    exit_code: int | None = Field(description="A script's exit code (negative: the signal that killed it).")
    http_status: int | None = Field(description="An api action's HTTP status.")
    error: str | None = Field(description="Why the run failed, timed out, was cancelled or skipped.")
    job_id: str | None = Field(description="Its entry in /api/myntrix/jobs.")
