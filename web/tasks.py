"""Scheduled tasks over HTTP (seeds 001, 003): define, list, change, delete, run now, history.

Every handler reaches the scheduler through its face (:class:`~actors.myntrix.scheduler.Tasks`)
and lets it refuse: 404 for an unknown id, 409
for a run now while a run of the task is going and its overlap policy is ``skip``, 422 for a bad
cron expression, time zone, action kind or parameters, with the reason. Bodies go out with the
seeds' camelCase names; a task's secret parameters (``Authorization`` headers, secret-looking
``env`` values) go out masked. Lists take ``?limit=`` and ``?offset=``, answer a JSON array and
put the total in ``X-Total-Count``.

Who may do what: viewers read tasks and their history; operators create, change and delete tasks
whose action does not execute on the host (``api``, ``agent``) and run any task now; only admins
define ``script`` tasks (the face refuses an operator with 403) or delete them. Only admins aim
an ``api`` task at an internal address (loopback, private, link-local...) that ``[outbound]
allow`` does not list (the face refuses others with 422), and the log of a run of such a task,
which holds what the destination answered, goes only to the task's creator and admins: the
history shows others the run with :data:`HIDDEN_LOGS` in its place (decision 0024).

``POST /api/myntrix/tasks/bulk`` creates up to 10,000 tasks in one request and one transaction,
all or none, with the rules of a single create (decision 0029); the body limit is the server's
(``[server] max_body_size``, 1 MiB by default): more tasks than fit go in several requests.

``/api/myntrix/tasks/history`` is a path of its own: a GET there is never read as a task id.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import ConfigDict, Field
from pydantic.alias_generators import to_camel
from quart import Blueprint
from quart_schema import validate_querystring, validate_request, validate_response

from actors.kit.wire import Page
from actors.myntrix.scheduler import (
    RunStatus,
    Task,
    TaskBulkCreate,
    TaskBulkCreated,
    TaskCreate,
    TaskRun,
    Tasks,
    TaskUpdate,
)
from vareon_runtime.auth import Principal, Role

from .kit import PageQuery, ResourceDocs, face, page_reply, resource_routes
from .permissions import current_principal, requires

__all__ = ["HIDDEN_LOGS", "TaskHistoryQuery", "TaskListQuery", "blueprint"]

HIDDEN_LOGS = "(hidden: what this task's destination answered is shown only to its creator and admins)"
"""The ``logs`` of a run whose log holds what an outbound call answered, for anyone else."""

blueprint = Blueprint("tasks", __name__)


class TaskListQuery(PageQuery):
    """`GET /api/myntrix/tasks` query."""

    enabled: bool | None = Field(None, description="Only enabled (true) or disabled (false) tasks.")


class TaskHistoryQuery(PageQuery):
    """`GET /api/myntrix/tasks/history` query (`taskId` or `task_id`)."""

    model_config = ConfigDict(alias_generator=to_camel, validate_by_name=True, validate_by_alias=True)

    task_id: str | None = Field(None, max_length=64, description="Only runs of this task.")
    status: RunStatus | None = Field(None, description="Only runs in this status (`succeeded` is read as `success`).")
    since: datetime | None = Field(None, description="Only runs started at or after this time (ISO 8601; UTC without a zone).")
    until: datetime | None = Field(None, description="Only runs started before this time (ISO 8601; UTC without a zone).")


resource_routes(
    blueprint,
    "/api/myntrix/tasks",
    Tasks,
    item=Task,
    query=TaskListQuery,
    create=TaskCreate,
    update=TaskUpdate,
    read=Role.VIEWER,
    write=Role.OPERATOR,
    docs=ResourceDocs(
        list="A page of tasks, oldest first, each with its next fire times; the total in `X-Total-Count`.",
        create=(
            "Add a task; the answer shows its next fire times (`nextRuns`). 422 for a bad cron expression,"
            " time zone, action or parameters (the reason in the message and details); 403 for a `script`"
            " task from a non-admin."
        ),
        get="One task, with its last run and next fire times.",
        update=(
            "Change the fields given (`{\"enabled\": false}` disables the task); the same checks as a create."
            " A masked secret sent back as shown keeps its stored value."
        ),
        delete=(
            "Remove the task and its runs, cancelling a run that is going (an admin's call for a `script`"
            " task: 403 otherwise)."
        ),
    ),
)


@blueprint.post("/api/myntrix/tasks/bulk")
@requires(Role.OPERATOR)
@validate_request(TaskBulkCreate)
@validate_response(TaskBulkCreated, 201)
async def create_tasks(data: TaskBulkCreate) -> tuple[TaskBulkCreated, int]:
    """Add many tasks in one transaction, all or none: `{"tasks": [...]}`, each as for
    `POST /api/myntrix/tasks`, 1 to 10,000 within the body limit (`[server] max_body_size`, 1 MiB
    by default: send more in several requests). Answers the new ids in the order given and their
    `count`. The rules of a single create apply to each task: 403 when a `script` task comes from
    a non-admin, 422 for anything else a task cannot be (a bad cron expression, time zone,
    action, parameters, destination), each problem located by the task's index and field
    (`tasks.3.schedule`), the list capped; then nothing is created."""
    return await face(Tasks).create_many(data, by=current_principal()), 201


@blueprint.get("/api/myntrix/tasks/history")
@requires(Role.VIEWER)
@validate_querystring(TaskHistoryQuery)
@validate_response(list[TaskRun])
async def task_history(query_args: TaskHistoryQuery) -> tuple[list[TaskRun], int, dict[str, str]]:
    """Runs of every task (or of ``taskId``), newest first, with their captured output; filtered by
    ``status`` and start time (``since`` inclusive, ``until`` exclusive); the total in ``X-Total-Count``.
    The log of an `api` task's run (what its destination answered) is shown only to the task's
    creator and admins; others see the run with a note in its place."""
    tasks = face(Tasks)
    page = await tasks.history(**query_args.model_dump())
    return page_reply(await _for_reader(tasks, page, current_principal()))


async def _for_reader(tasks: Tasks, page: Page[TaskRun], reader: Principal) -> Page[TaskRun]:
    """``page`` with the logs ``reader`` may not read hidden."""
    if reader.role is Role.ADMIN:
        return page
    owners = await tasks.log_owners(run.task_id for run in page.items if run.logs)
    hidden = {task_id for task_id, creator in owners.items() if creator != reader.username}
    if not hidden:
        return page
    items = [run.model_copy(update={"logs": HIDDEN_LOGS}) if run.task_id in hidden else run for run in page.items]
    return page._replace(items=items)


@blueprint.post("/api/myntrix/tasks/<task_id>/run")
@requires(Role.OPERATOR)
@validate_response(TaskRun, 202)
async def run_task(task_id: str) -> tuple[TaskRun, int]:
    """Run the task now, bypassing its schedule; answers the run as started (poll the history for
    its end). 409 while a run is going and the task's overlap policy is ``skip``."""
    return await face(Tasks).run_now(task_id, by=current_principal()), 202
