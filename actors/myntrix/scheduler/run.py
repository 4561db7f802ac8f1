"""One run of a task: :class:`RunWorker`, a temporary child ``<run id>`` of the module's
``task-runs`` :class:`~vareon_runtime.dynamic_supervisor.DynamicSupervisor`, with its
:class:`RunControl` (how others follow and stop it) and its :class:`RunLog`. Runs are booked and
started by :class:`~actors.myntrix.scheduler.runs.Runs`.

A run takes no messages, so it is a worker process in OTP's sense rather than a mailbox
:class:`~vareon_runtime.actor.Actor`: it is stopped by cancellation (:meth:`RunControl.cancel`
with a reason, or its supervisor stopping), which costs a trio task per run instead of a
mailbox, a registry entry and three tasks, so ten thousand runs due at one instant start in one
sweep (docs/decisions/0017-runs-as-workers.md). A run:

1. is noted as it is started (:meth:`RunWorker.note_start`, synchronously, by
   :meth:`~actors.myntrix.scheduler.runs.Runs.start`): its ``task_runs`` row (``running``) and
   its ``jobs`` entry (type ``task.run``) go to the module's
   :class:`~actors.myntrix.scheduler.recorder.RunRecorder`, which writes them in batches: the
   action does not wait for the database (a manual run is answered once its row is written);
2. publishes ``task.<id>.run`` ``started`` on the bus (each log line goes to ``task.<id>.log``);
3. runs the action under the task's timeout: a timeout cancels it (status ``timeout``), as does
   :meth:`RunControl.cancel` (``cancelled``: the task was deleted, the runtime is stopping). The
   action cleans up (kills its process group) before it returns;
4. notes the final status, the log's tail, exit code or HTTP status and the error, and the job's
   end; once they are written, publishes ``finished``. Noting is synchronous, so a stop arriving
   at any point loses nothing: a run cancelled from outside notes ``cancelled`` on its way out,
   and the recorder, stopped after the runs, writes what is noted.

Nothing an action does can crash the scheduler: an exception from it (a bug) ends the run as
``failed`` with the error's class and message, and the worker ends normally.
"""

from __future__ import annotations

import logging
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import trio
from pydantic import BaseModel
from vareon_runtime.bus import EventBus
from vareon_runtime.clock import isoformat
from vareon_runtime.errors import NotFoundError, ServiceError

from ..jobs import job_row
from ..schemas import JobStatus
from .actions import ActionContext, ActionOutcome
from .messages import TaskSpec
from .recorder import RunNote
from .schemas import RunStatus, RunTrigger, TaskRun

if TYPE_CHECKING:
    from .runs import Runs

__all__ = ["JOB_TYPE", "RunControl", "RunLog", "RunWorker", "log_topic", "run_topic"]

log = logging.getLogger("vareon.myntrix.scheduler.run")

JOB_TYPE = "task.run"
"""The ``jobs.type`` of a task run."""



def run_topic(task_id: str) -> str:
    """The bus topic of a task's run events (``started``, ``finished``, ``skipped``)."""
    return f"task.{task_id}.run"


def log_topic(task_id: str) -> str:
    """The bus topic of a task's run log lines."""
    return f"task.{task_id}.log"


class RunLog:
    """A run's captured log: the tail of its lines, at most ``limit`` characters; each line is
    also published on ``task.<id>.log``. Appending never blocks."""

    def __init__(self, limit: int, bus: EventBus, task_id: str, run_id: str) -> None:
        self.limit = limit
        self._bus = bus
        self._topic = log_topic(task_id)
        self._run_id = run_id
        self._lines: deque[str] = deque()
        self._size = 0
        self.dropped = 0

    def __call__(self, line: str) -> None:
        line = line.rstrip("\n")[: self.limit]
        self._lines.append(line)
        self._size += len(line) + 1
        while self._size > self.limit + 1 and len(self._lines) > 1:
            self._size -= len(self._lines.popleft()) + 1
            self.dropped += 1
        self._bus.publish(self._topic, {"runId": self._run_id, "line": line})

    @property
    def text(self) -> str | None:
        """The kept lines, newline-separated (None when nothing was logged)."""
        if not self._lines:
            return None
        text = "\n".join(self._lines)
        if self.dropped:
            text = f"({self.dropped} earlier lines dropped)\n{text}"[-self.limit :]
        return text


@dataclass(eq=False)
class RunControl:
    """One booked run: what it runs, and how the others follow and stop it."""

    spec: TaskSpec
    trigger: RunTrigger
    scheduled_for: datetime | None
    note: str | None = None
    user: str | None = None
    run_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    done: trio.Event = field(default_factory=trio.Event)
    # Set as the run is started: its rows on their way to the database, and (a manual run) the
    # run as it started (status running).
    record: RunNote | None = None
    started: TaskRun | None = None
    error: BaseException | None = None
    cancel_reason: str | None = None
    _scope: trio.CancelScope | None = None

    @property
    def task_id(self) -> str:
        return self.spec.id

    def cancel(self, reason: str) -> None:
        """Stop the run's action (the run ends ``cancelled`` with ``reason``)."""
        if self.cancel_reason is None:
            self.cancel_reason = reason
        if self._scope is not None:
            self._scope.cancel()


class RunWorker:
    """One run of a task (see the module docstring)."""

    def __init__(self, runs: Runs, control: RunControl) -> None:
        self.runs = runs
        self.control = control
        self.log = RunLog(runs.settings.log_max, runs.bus, control.task_id, control.run_id)
        self.start = runs.now()  # when the run started
        self.end = self.start  # when it ended, once it has
        self.error: str | None = None  # why it did not succeed, once it has ended

    def note_start(self) -> RunNote:
        """Note the ``running`` row and the job with the recorder (written in its next batch)."""
        runs, control, spec = self.runs, self.control, self.control.spec
        if control.note:
            self.log(control.note)
        scheduled_for = isoformat(control.scheduled_for) if control.scheduled_for else None
        details: dict[str, Any] = {
            "taskId": spec.id, "runId": control.run_id, "trigger": control.trigger.value, "scheduledFor": scheduled_for,
        }  # fmt: skip
        if control.user:
            details["user"] = control.user
        job = job_row(
            f"task {spec.name}", JOB_TYPE, status=JobStatus.RUNNING, log=f"run {control.run_id} started",
            details=details, now=self.start,
        )  # fmt: skip
        row = {
            "id": control.run_id,
            "task_id": spec.id,
            "scheduled_for": control.scheduled_for,
            "start_time": self.start,
            "status": RunStatus.RUNNING.value,
            "trigger": control.trigger.value,
            "logs": self.log.text,
            "job_id": job["id"],
        }
        control.record = runs.recorder.started(row, job)
        if control.trigger is RunTrigger.MANUAL:
            started = control.record.row
            control.started = TaskRun.model_validate({name: started[name] for name in TaskRun.model_fields})
        return control.record

    async def run(self) -> None:
        """Run the action and record how it ended; a bug of ours here is the supervisor's to log."""
        try:
            await self._run()
        finally:
            self.runs.release(self.control)

    async def _run(self) -> None:
        runs, control, spec = self.runs, self.control, self.control.spec
        runs.bus.publish(
            run_topic(spec.id),
            {
                "event": "started",
                "taskId": spec.id,
                "runId": control.run_id,
                "status": RunStatus.RUNNING.value,
                "trigger": control.trigger.value,
                "scheduledFor": isoformat(control.scheduled_for) if control.scheduled_for else None,
            },
        )
        try:
            status, outcome = await self._act()
        except BaseException:
            # Cancelled from outside (the runtime stopping): note how it ended, then go.
            self._note_end(RunStatus.CANCELLED, ActionOutcome(ok=False, error="the runtime stopped while the task ran"))
            raise
        self._note_end(status, outcome)
        await self._report(status, outcome)

    async def _act(self) -> tuple[RunStatus, ActionOutcome]:
        """Run the action under the timeout; never raises but for a cancellation from outside."""
        runs, control, spec = self.runs, self.control, self.control.spec
        try:
            action = runs.actions.action(spec.action)
            params: BaseModel = runs.actions.validate(spec.action, spec.parameters, check=False)
        except ServiceError as exc:
            self.log(f"cannot run: {exc.message}")
            return RunStatus.FAILED, ActionOutcome(ok=False, error=exc.message)
        ctx = ActionContext(
            task_id=spec.id, run_id=control.run_id, registry=runs.registry, bus=runs.bus, log=self.log,
            started_process=self._started_process,
        )  # fmt: skip
        outcome: ActionOutcome | None = None
        try:
            with trio.CancelScope() as scope:
                control._scope = scope
                if control.cancel_reason is not None:
                    scope.cancel()
                if spec.timeout is not None:
                    scope.deadline = trio.current_time() + spec.timeout
                outcome = await action.run(params, ctx)
        except Exception as exc:
            # A bug in the action: the run fails with it, the scheduler carries on.
            log.exception("task %s: the %s action raised", spec.id, spec.action)
            error = f"the {spec.action} action raised {type(exc).__name__}: {exc}"
            self.log(error)
            return RunStatus.FAILED, ActionOutcome(ok=False, error=error)
        finally:
            control._scope = None
        if outcome is None or scope.cancelled_caught:
            if control.cancel_reason is not None:
                self.log(f"cancelled: {control.cancel_reason}")
                return RunStatus.CANCELLED, ActionOutcome(ok=False, error=control.cancel_reason)
            error = f"the run took longer than the task's timeout of {spec.timeout:g}s and was cancelled"
            self.log(error)
            return RunStatus.TIMEOUT, ActionOutcome(ok=False, error=error)
        if not isinstance(outcome, ActionOutcome):
            error = f"the {spec.action} action returned {type(outcome).__name__}, not an ActionOutcome"
            return RunStatus.FAILED, ActionOutcome(ok=False, error=error)
        return (RunStatus.SUCCEEDED if outcome.ok else RunStatus.FAILED), outcome

    def _started_process(self, pid: int, create_time: float | None) -> None:
        record = self.control.record
        assert record is not None, "noted when the run was started"
        self.runs.recorder.changed(record, {"pid": pid, "process_create_time": create_time})

    def _note_end(self, status: RunStatus, outcome: ActionOutcome) -> None:
        """Note the final row and the job's end with the recorder."""
        control = self.control
        record = control.record
        assert record is not None, "noted when the run was started"
        self.end = self.runs.now()
        self.error = error = outcome.error if status is not RunStatus.SUCCEEDED else None
        summary = f"run {control.run_id} {status.value}" + (f": {error}" if error else "")
        changes = {
            "end_time": self.end,
            "status": status.value,
            "exit_code": outcome.exit_code,
            "http_status": outcome.http_status,
            "error": error,
            "logs": self.log.text,
        }
        self.runs.recorder.finished(
            record, changes, ok=status is RunStatus.SUCCEEDED, job_log=summary[:4096], job_details={"status": status.value}
        )

    async def _report(self, status: RunStatus, outcome: ActionOutcome) -> None:
        """Once the end is written, log it and publish ``finished``."""
        runs, control, spec = self.runs, self.control, self.control.spec
        record = control.record
        assert record is not None, "noted when the run was started"
        await record.written.wait()
        run_id = control.run_id
        if record.error is not None and not isinstance(record.error, NotFoundError):  # not: deleted meanwhile
            log.error("task %s: run %s ended %s but could not be recorded: %s", spec.id, run_id, status.value, record.error)
        seconds = (self.end - self.start).total_seconds()
        log.info("task %s (%s): run %s %s in %.3fs", spec.id, spec.name, run_id, status.value, seconds)
        runs.bus.publish(
            run_topic(spec.id),
            {
                "event": "finished",
                "taskId": spec.id,
                "runId": run_id,
                "status": status.value,
                "trigger": control.trigger.value,
                "exitCode": outcome.exit_code,
                "httpStatus": outcome.http_status,
                "error": self.error,
                "seconds": seconds,
            },
        )
