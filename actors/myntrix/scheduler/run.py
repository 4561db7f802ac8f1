"""One run of a task: :class:`TaskRunControl` (what it runs and how others stop it) and
:class:`TaskRunWorker`, a :class:`~actors.kit.runs.RunWorker` (a temporary child ``<run id>`` of
the module's ``task-runs`` dynamic supervisor) whose work is the task's action.

The kit's worker does what every run does (docs/decisions/0017-runs-as-workers.md): the row
``running`` and its job (type ``task.run``) noted with the recorder as the run starts, the
action under the task's timeout, ``timeout`` or ``cancelled`` (with who asked) when it does not
end by itself, a bug of the action ending the run ``failed`` without touching the scheduler, the
final row and the job's end, then ``finished`` on ``task.<id>.run`` once written. Here is only
what is a task run's own: the action, its parameters, the exit code or HTTP status, the events'
fields. Runs are booked and started by :class:`~actors.myntrix.scheduler.runs.TaskRuns`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from actors.kit.jobs import job_row
from actors.kit.recorder import Recorder
from actors.kit.runs import RunBook, RunControl, RunWorker
from actors.kit.states import RunState
from vareon_runtime.bus import EventBus
from vareon_runtime.clock import isoformat
from vareon_runtime.registry import Registry

from .actions import ActionContext, ActionOutcome, ActionRegistry, Outbound
from .messages import TaskSpec
from .schemas import TASK_RUN_WORDS, RunTrigger, TaskRun

__all__ = ["JOB_TYPE", "TaskRunControl", "TaskRunWorker", "log_topic", "owner_mark", "run_topic"]

JOB_TYPE = "task.run"
"""The ``jobs.type`` of a task run."""


def run_topic(task_id: str) -> str:
    """The bus topic of a task's run events (``started``, ``finished``, ``skipped``)."""
    return f"task.{task_id}.run"


def log_topic(task_id: str) -> str:
    """The bus topic of a task's run log lines."""
    return f"task.{task_id}.log"


def owner_mark(run_id: str) -> str:
    """The owner mark of the processes a run starts (see :mod:`drivers.identity`)."""
    return f"task-run/{run_id}"


@dataclass(eq=False, kw_only=True, slots=True)
class TaskRunControl(RunControl):
    """One booked run of a task."""

    spec: TaskSpec
    trigger: RunTrigger
    scheduled_for: datetime | None
    note: str | None = None
    # Set as a manual run is started: the run as it started (status running).
    started: TaskRun | None = None


class TaskRunWorker(RunWorker[TaskRunControl, ActionOutcome]):
    """One run of a task (see the module docstring).

    Args:
        control: the booked run.
        book, recorder, bus, now: the module's (see :class:`~actors.kit.runs.RunWorker`).
        registry: the runtime's (the ``agent`` action finds the agents there).
        actions: the action kinds.
        log_max: characters of the run's log kept.
        outbound: the ``[outbound]`` rule and the creators' roles: the action's outbound calls go
            with the task's creator's current role.
    """

    noun = "run"
    whose_timeout = "the task's"

    def __init__(
        self,
        control: TaskRunControl,
        *,
        book: RunBook[TaskRunControl],
        recorder: Recorder,
        bus: EventBus,
        registry: Registry,
        actions: ActionRegistry,
        now: Callable[[], datetime],
        log_max: int,
        outbound: Outbound,
    ) -> None:
        super().__init__(
            control, book=book, recorder=recorder, bus=bus, words=TASK_RUN_WORDS, now=now,
            log_topic=log_topic(control.owner_id), log_max=log_max,
        )  # fmt: skip
        self.registry = registry
        self.actions = actions
        self.outbound = outbound
        self.timeout = control.spec.timeout
        self.topic = run_topic(control.owner_id)

    def start_rows(self) -> tuple[dict[str, Any], dict[str, Any] | None]:
        control, spec = self.control, self.control.spec
        if control.note:
            self.log(control.note)
        scheduled_for = isoformat(control.scheduled_for) if control.scheduled_for else None
        details: dict[str, Any] = {
            "taskId": spec.id, "runId": control.run_id, "trigger": control.trigger.value, "scheduledFor": scheduled_for,
        }  # fmt: skip
        if control.user:
            details["user"] = control.user
        job = job_row(
            f"task {spec.name}", JOB_TYPE, state=RunState.RUNNING, log=f"run {control.run_id} started",
            details=details, now=self.start,
        )  # fmt: skip
        row = {
            "id": control.run_id,
            "task_id": spec.id,
            "scheduled_for": control.scheduled_for,
            "start_time": self.start,
            "status": RunState.RUNNING.value,
            "trigger": control.trigger.value,
            "job_id": job["id"],
        }
        return row, job

    def note_start(self) -> Any:
        note = super().note_start()
        if self.control.trigger is RunTrigger.MANUAL:
            started = {**note.row, "status": TASK_RUN_WORDS.wire(RunState.RUNNING)}
            self.control.started = TaskRun.model_validate({name: started[name] for name in TaskRun.model_fields})
        return note

    async def act(self) -> ActionOutcome:
        control, spec = self.control, self.control.spec
        action = self.actions.action(spec.action)
        params: BaseModel = self.actions.validate(spec.action, spec.parameters, check=False)
        ctx = ActionContext(
            task_id=spec.id, run_id=control.run_id, registry=self.registry, bus=self.bus, log=self.log,
            started_process=self._started_process, outbound=self.outbound.guard,
            reaches_internal=self.outbound.creator_reach(spec.created_by), keep=self.log.kept,
        )  # fmt: skip
        outcome = await action.run(params, ctx)
        if not isinstance(outcome, ActionOutcome):
            return self.failed(f"the {spec.action} action returned {type(outcome).__name__}, not an ActionOutcome")
        return outcome

    def _what(self) -> str:
        return f"the {self.control.spec.action} action"

    def failed(self, error: str) -> ActionOutcome:
        return ActionOutcome(ok=False, error=error)

    def end_changes(self, state: RunState, outcome: ActionOutcome | None) -> dict[str, Any]:
        return {
            "exit_code": outcome.exit_code if outcome else None,
            "http_status": outcome.http_status if outcome else None,
        }

    def event(self, name: str, state: RunState, outcome: ActionOutcome | None) -> dict[str, Any]:
        control = self.control
        data: dict[str, Any] = {
            "event": name,
            "taskId": control.owner_id,
            "runId": control.run_id,
            "status": TASK_RUN_WORDS.wire(state).value,
            "trigger": control.trigger.value,
        }
        if name == "started":
            data["scheduledFor"] = isoformat(control.scheduled_for) if control.scheduled_for else None
        else:
            data.update(
                exitCode=outcome.exit_code if outcome else None,
                httpStatus=outcome.http_status if outcome else None,
                error=self.error,
                seconds=(self.end - self.start).total_seconds(),
            )
        return data

    def _started_process(self, pid: int, create_time: float | None) -> None:
        record = self.control.record
        assert record is not None, "noted when the run was started"
        self.recorder.changed(record, {"pid": pid, "process_create_time": create_time})
