"""Scheduled tasks over HTTP (seeds 001, 003): define, list, change, delete, run now, history.

Every handler reaches the scheduler through the registry (:func:`actors.myntrix.scheduler.tasks_of`)
and lets the :class:`~actors.myntrix.scheduler.Tasks` face refuse: 404 for an unknown id, 409
for a run now while a run of the task is going and its overlap policy is ``skip``, 422 for a bad
cron expression, time zone, action kind or parameters, with the reason. Bodies go out with the
seeds' camelCase names; a task's secret parameters (``Authorization`` headers, secret-looking
``env`` values) go out masked. Lists take ``?limit=`` and ``?offset=``, answer a JSON array and
put the total in ``X-Total-Count``.

Who may do what: viewers read tasks and their history; operators create, change and delete tasks
whose action does not execute on the host (``api``, ``agent``) and run any task now; only admins
define ``script`` tasks (the face refuses an operator with 403) or delete them.

``/api/myntrix/tasks/history`` is a path of its own: a GET there is never read as a task id.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel
from quart import Blueprint
from quart_schema import validate_querystring, validate_request, validate_response

from actors.myntrix.scheduler import (
    RunStatus,
    Task,
    TaskCreate,
    TaskRun,
    Tasks,
    TaskUpdate,
    tasks_of,
)
from vareon_runtime.auth import Role
from vareon_runtime.errors import NotRegisteredError, UnavailableError

from .context import current_context
from .myntrix import TOTAL_COUNT_HEADER
from .permissions import current_principal, requires

__all__ = ["TaskHistoryQuery", "TaskListQuery", "blueprint"]

blueprint = Blueprint("tasks", __name__)

_NOT_RUNNING = (
    "the task scheduler is not running (not installed, disabled, or restarting); see /api/system/status"
)


class TaskListQuery(BaseModel):
    """``GET /api/myntrix/tasks`` query."""

    limit: int = Field(50, ge=1, le=500, description="Tasks per page.")
    offset: int = Field(0, ge=0, description="Tasks skipped before the page.")
    enabled: bool | None = Field(None, description="Only enabled (true) or disabled (false) tasks.")


class TaskHistoryQuery(BaseModel):
    """``GET /api/myntrix/tasks/history`` query (``taskId`` or ``task_id``)."""

    model_config = ConfigDict(alias_generator=to_camel, validate_by_name=True, validate_by_alias=True)

    task_id: str | None = Field(None, max_length=64, description="Only runs of this task.")
    status: RunStatus | None = Field(None, description="Only runs in this status.")
    since: datetime | None = Field(None, description="Only runs started at or after this time (ISO 8601; UTC without a zone).")
    until: datetime | None = Field(None, description="Only runs started before this time (ISO 8601; UTC without a zone).")
    limit: int = Field(50, ge=1, le=500, description="Runs per page.")
    offset: int = Field(0, ge=0, description="Runs skipped before the page.")


async def _tasks() -> Tasks:
    try:
        return await tasks_of(current_context().registry)
    except NotRegisteredError:
        raise UnavailableError(_NOT_RUNNING) from None


@blueprint.get("/api/myntrix/tasks")
@requires(Role.VIEWER)
@validate_querystring(TaskListQuery)
@validate_response(list[Task])
async def list_tasks(query_args: TaskListQuery) -> tuple[list[Task], int, dict[str, str]]:
    """A page of tasks, oldest first, each with its next fire times; the total in ``X-Total-Count``."""
    page = await (await _tasks()).list(limit=query_args.limit, offset=query_args.offset, enabled=query_args.enabled)
    return page.items, 200, {TOTAL_COUNT_HEADER: str(page.total)}


@blueprint.post("/api/myntrix/tasks")
@requires(Role.OPERATOR)
@validate_request(TaskCreate)
@validate_response(Task, 201)
async def create_task(data: TaskCreate) -> tuple[Task, int]:
    """Add a task; the answer shows its next fire times (``nextRuns``). 422 for a bad cron
    expression, time zone, action or parameters (the reason in the message and details); 403 for
    a ``script`` task from a non-admin."""
    principal = current_principal()
    return await (await _tasks()).create(data, role=principal.role, user=principal.username), 201


@blueprint.get("/api/myntrix/tasks/history")
@requires(Role.VIEWER)
@validate_querystring(TaskHistoryQuery)
@validate_response(list[TaskRun])
async def task_history(query_args: TaskHistoryQuery) -> tuple[list[TaskRun], int, dict[str, str]]:
    """Runs of every task (or of ``taskId``), newest first, with their captured output; filtered by
    ``status`` and start time (``since`` inclusive, ``until`` exclusive); the total in ``X-Total-Count``."""
    status = query_args.status.value if query_args.status is not None else None
    page = await (await _tasks()).history(
        task_id=query_args.task_id,
        status=status,
        since=query_args.since,
        until=query_args.until,
        limit=query_args.limit,
        offset=query_args.offset,
    )
    return page.items, 200, {TOTAL_COUNT_HEADER: str(page.total)}


@blueprint.get("/api/myntrix/tasks/<task_id>")
@requires(Role.VIEWER)
@validate_response(Task)
async def get_task(task_id: str) -> Task:
    """One task, with its last run and next fire times."""
    return await (await _tasks()).get(task_id)


@blueprint.put("/api/myntrix/tasks/<task_id>")
@requires(Role.OPERATOR)
@validate_request(TaskUpdate)
@validate_response(Task)
async def update_task(task_id: str, data: TaskUpdate) -> Task:
    """Change the fields given (``{"enabled": false}`` disables the task); the same checks as a
    create. A masked secret sent back as shown keeps its stored value."""
    return await (await _tasks()).update(task_id, data, role=current_principal().role)


@blueprint.delete("/api/myntrix/tasks/<task_id>")
@requires(Role.OPERATOR)
async def delete_task(task_id: str) -> tuple[str, int]:
    """Remove the task and its runs, cancelling a run that is going (an admin's call for a
    ``script`` task: 403 otherwise)."""
    await (await _tasks()).delete(task_id, role=current_principal().role)
    return "", 204


@blueprint.post("/api/myntrix/tasks/<task_id>/run")
@requires(Role.OPERATOR)
@validate_response(TaskRun, 202)
async def run_task(task_id: str) -> tuple[TaskRun, int]:
    """Run the task now, bypassing its schedule; answers the run as started (poll the history for
    its end). 409 while a run is going and the task's overlap policy is ``skip``."""
    return await (await _tasks()).run_now(task_id, user=current_principal().username), 202
