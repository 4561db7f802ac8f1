"""Runs of tasks: each a temporary child actor ``task-run/<run id>`` of the ``task-runs`` supervisor.

:class:`Runs` is what the scheduler actor and the face start runs with. Starting is two steps so
that the overlap check cannot race: :meth:`Runs.reserve` (synchronous: checks the overlap policy
against the runs in the book and books the new one) and :meth:`Runs.start` (adds the child).

A :class:`TaskRunActor` reports started at once and does its work in the background, so that the
supervisor's lock is never held across a database write and a thousand runs due at one instant
start without waiting for each other's commits (the store commits their rows in groups):

1. records the ``task_runs`` row (``running``) and a ``jobs`` entry (type ``task.run``), together,
   in the background: the action starts at once, so a run due with a thousand others is not
   late by their commits (a manual run is answered once its row is written);
2. publishes ``task.<id>.run`` ``started`` on the bus (each log line goes to ``task.<id>.log``);
3. runs the action under the task's timeout: a timeout cancels it (status ``timeout``), as does
   :meth:`RunControl.cancel` (``cancelled``: the task was deleted, the runtime is stopping). The
   action cleans up (kills its process group) before it returns;
4. once the row is written, writes the final status, the log's tail, exit code or HTTP status and the error; prunes the
   task's runs beyond ``runs_keep``; finishes the job; publishes ``finished``.

Nothing an action does can crash the scheduler: an exception from it (a bug) ends the run as
``failed`` with the error's class and message, and the run actor ends normally.
"""

from __future__ import annotations

import logging
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import trio
from pydantic import BaseModel
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from vareon_runtime.actor import Actor
from vareon_runtime.bus import EventBus
from vareon_runtime.clock import isoformat
from vareon_runtime.errors import ServiceError, UnavailableError, VareonError
from vareon_runtime.registry import Registry
from vareon_runtime.store import Store
from vareon_runtime.supervisor import ChildSpec, Restart, Supervisor

from ..jobs import Jobs
from ..schemas import JobStatus
from .actions import ActionContext, ActionOutcome, ActionRegistry
from .errors import TaskBusyError
from .messages import TaskSpec
from .models import ScheduledTaskRecord, TaskRunRecord, run_from_record
from .schemas import Overlap, RunStatus, RunTrigger, TaskRun
from .settings import SchedulerSettings

__all__ = ["JOB_TYPE", "RunControl", "RunLog", "Runs", "TaskRunActor", "run_topic"]

log = logging.getLogger("vareon.myntrix.scheduler.run")

JOB_TYPE = "task.run"
"""The ``jobs.type`` of a task run."""

_FINISH_BUDGET = 3600.0  # seconds the final writes get at most, shielded (see _run)


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
    recorded: trio.Event = field(default_factory=trio.Event)
    done: trio.Event = field(default_factory=trio.Event)
    # Set once recorded: the row as written (status running), or why it could not be written.
    run: TaskRun | None = None
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


class Runs:
    """The runs of one scheduler module: the book of live runs, starting and cancelling them.

    Args:
        store, bus, registry: the runtime's.
        jobs: where each run is reported.
        actions: the action kinds (the global registry, or a private one in tests and benches).
        settings: the module's tunables.
        now: wall-clock time for the records.
        supervisor: the ``task-runs`` supervisor, a callable as it is replaced on restart.
    """

    def __init__(
        self,
        store: Store,
        bus: EventBus,
        registry: Registry,
        jobs: Jobs,
        actions: ActionRegistry,
        *,
        settings: SchedulerSettings,
        now: Callable[[], datetime],
        supervisor: Callable[[], Supervisor],
    ) -> None:
        self.store = store
        self.bus = bus
        self.registry = registry
        self.jobs = jobs
        self.actions = actions
        self.settings = settings
        self.now = now
        self.supervisor = supervisor
        self._live: dict[str, dict[str, RunControl]] = {}  # task id -> run id -> control
        self.closing = False

    # ------------------------------------------------------------------ the book

    def live(self, task_id: str | None = None) -> list[RunControl]:
        """The booked runs of a task (every task's when None), oldest first."""
        if task_id is not None:
            return list(self._live.get(task_id, {}).values())
        return [control for runs in self._live.values() for control in runs.values()]

    def reserve(
        self,
        spec: TaskSpec,
        trigger: RunTrigger,
        scheduled_for: datetime | None,
        *,
        note: str | None = None,
        user: str | None = None,
    ) -> RunControl | None:
        """Book a run of ``spec`` unless its overlap policy forbids one now (then None)."""
        booked = self._live.get(spec.id)
        if self.closing or (booked and spec.overlap is Overlap.SKIP):
            return None
        control = RunControl(spec, trigger, scheduled_for, note=note, user=user)
        self._live.setdefault(spec.id, {})[control.run_id] = control
        return control

    def _release(self, control: RunControl) -> None:
        runs = self._live.get(control.task_id)
        if runs is not None:
            runs.pop(control.run_id, None)
            if not runs:
                del self._live[control.task_id]
        control.recorded.set()
        control.done.set()

    async def start(self, control: RunControl) -> None:
        """Start the booked run as a child ``task-run/<run id>``; on failure the booking is released."""
        try:
            await self.supervisor().start_child(
                ChildSpec(
                    f"task-run/{control.run_id}",
                    lambda: TaskRunActor(self, control),
                    restart=Restart.TEMPORARY,
                    shutdown=self.settings.run_shutdown,
                )
            )
        except BaseException as exc:
            if isinstance(exc, Exception):
                log.error("task %s: run %s could not start: %r", control.task_id, control.run_id, exc)
                control.error = exc
            self._release(control)
            raise

    async def run_now(self, spec: TaskSpec, *, user: str | None = None) -> TaskRun:
        """Start a manual run and answer it as recorded (status running).

        Raises:
            TaskBusyError: a run is still going and the task's overlap policy is skip (409).
            UnavailableError: the run could not be recorded (the database failed) or started.
        """
        control = self.reserve(spec, RunTrigger.MANUAL, None, user=user)
        if control is None:
            if self.closing:
                raise UnavailableError("the scheduler is stopping; run the task once it is back")
            busy = self.live(spec.id)
            raise TaskBusyError(
                f"task {spec.name!r} is still running (run {busy[0].run_id if busy else '?'}) and its overlap "
                "policy is skip; wait for the run to end, or set overlap to allow",
                details={"taskId": spec.id, "runId": busy[0].run_id if busy else None},
            )
        try:
            await self.start(control)
        except VareonError as exc:
            raise UnavailableError(f"the run of task {spec.name!r} could not start: {exc}") from exc
        # No deadline: the run actor sets `recorded` on every path (written, failed, cancelled).
        await control.recorded.wait()
        if control.run is None:
            raise UnavailableError(f"the run of task {spec.name!r} could not be recorded: {control.error}")
        return control.run

    async def skip(self, spec: TaskSpec, scheduled_for: datetime, reason: str) -> None:
        """Record a fire time that did not run (overlap or misfire), with the reason."""
        now = self.now()
        run_id = str(uuid.uuid4())
        keep = self.settings.runs_keep

        def insert(session: Session) -> None:
            if session.get(ScheduledTaskRecord, spec.id) is None:
                return  # deleted meanwhile
            session.add(
                TaskRunRecord(
                    id=run_id,
                    task_id=spec.id,
                    scheduled_for=scheduled_for,
                    start_time=now,
                    end_time=now,
                    status=RunStatus.SKIPPED.value,
                    trigger=RunTrigger.CRON.value,
                    error=reason,
                )
            )
            session.flush()
            _prune(session, spec.id, keep)

        try:
            await self.store.write(insert)
        except VareonError as exc:
            log.error("task %s: the skipped fire time %s could not be recorded: %s", spec.id, scheduled_for, exc)
            return
        log.info("task %s (%s): fire time %s skipped: %s", spec.id, spec.name, isoformat(scheduled_for), reason)
        self.bus.publish(
            run_topic(spec.id),
            {
                "event": "skipped",
                "taskId": spec.id,
                "runId": run_id,
                "status": RunStatus.SKIPPED.value,
                "scheduledFor": isoformat(scheduled_for),
                "error": reason,
            },
        )

    # ------------------------------------------------------------------ stopping

    async def cancel(self, controls: list[RunControl], reason: str, *, timeout: float) -> list[RunControl]:
        """Cancel ``controls`` at once and wait up to ``timeout`` seconds for them to end.

        Returns:
            The runs that had not ended by then.
        """
        for control in controls:
            control.cancel(reason)
        with trio.move_on_after(timeout):
            for control in controls:
                await control.done.wait()
        return [control for control in controls if not control.done.is_set()]


def _prune(session: Session, task_id: str, keep: int) -> None:
    """Delete the task's runs beyond the newest ``keep`` (one statement)."""
    newest = (
        select(TaskRunRecord.id)
        .where(TaskRunRecord.task_id == task_id)
        .order_by(TaskRunRecord.start_time.desc(), TaskRunRecord.id.desc())
        .limit(keep)
    )
    session.execute(
        delete(TaskRunRecord)
        .where(TaskRunRecord.task_id == task_id, TaskRunRecord.id.not_in(newest.scalar_subquery()))
        .execution_options(synchronize_session=False)
    )


class TaskRunActor(Actor):
    """One run of a task (see the module docstring)."""

    def __init__(self, runs: Runs, control: RunControl) -> None:
        super().__init__()
        self.runs = runs
        self.control = control
        self.log = RunLog(runs.settings.log_max, runs.bus, control.task_id, control.run_id)
        self.job_id: str | None = None
        self._job_done = trio.Event()

    async def on_start(self) -> None:
        self.nursery.start_soon(self._execute)

    async def _execute(self) -> None:
        control = self.control
        try:
            await self._run()
        except BaseException as exc:
            if isinstance(exc, Exception):
                # A bug of ours (the action's own errors are caught in _run): the run is lost,
                # the scheduler lives on.
                log.exception("task %s: run %s failed in the runtime", control.task_id, control.run_id)
            if not isinstance(exc, Exception):
                raise
        finally:
            self.runs._release(control)
            self.stop()

    async def _run(self) -> None:
        runs, control, spec = self.runs, self.control, self.control.spec
        if control.note:
            self.log(control.note)
        start = runs.now()
        # The row and the job are written while the action already runs: a run starts on time
        # even when a thousand are due at once and their commits queue up. The final write
        # waits for them.
        self.nursery.start_soon(self._record_quietly, start)
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
            # Cancelled from outside (the supervisor stopping the run): record it, then go.
            with trio.CancelScope(shield=True) as scope:
                scope.deadline = trio.current_time() + _FINISH_BUDGET
                await control.recorded.wait()
                stopped = ActionOutcome(ok=False, error="the runtime stopped while the task ran")
                await self._finish(start, RunStatus.CANCELLED, stopped)
            raise
        # Shielded: a stop arriving now must not drop the final write. The long bound only keeps
        # a wedged store from holding the run forever (a short one would be jumped over by a
        # test's simulated clock while a commit is in flight, and drop the write).
        with trio.CancelScope(shield=True) as scope:
            scope.deadline = trio.current_time() + _FINISH_BUDGET
            await control.recorded.wait()
            await self._finish(start, status, outcome)

    async def _record_quietly(self, start: datetime) -> None:
        control = self.control
        try:
            await self._record(start)
        except Exception as exc:
            control.error = exc
            log.error("task %s: run %s could not be recorded: %s", control.task_id, control.run_id, exc)
        finally:
            control.recorded.set()

    async def _record(self, start: datetime) -> None:
        """Write the ``running`` row and create the job, concurrently (one commit group);
        ``control.run`` is the row once written."""
        runs, control, spec = self.runs, self.control, self.control.spec
        row: dict[str, Any] = {
            "id": control.run_id,
            "task_id": spec.id,
            "scheduled_for": control.scheduled_for,
            "start_time": start,
            "status": RunStatus.RUNNING.value,
            "trigger": control.trigger.value,
            "logs": self.log.text,
        }

        def insert(session: Session) -> TaskRun:
            record = TaskRunRecord(**row)
            session.add(record)
            session.flush()
            return run_from_record(record)

        self.nursery.start_soon(self._create_job)
        control.run = await runs.store.write(insert)
        await self._job_done.wait()
        control.run = control.run.model_copy(update={"job_id": self.job_id})

    async def _create_job(self) -> None:
        runs, control, spec = self.runs, self.control, self.control.spec
        details = {
            "taskId": spec.id,
            "runId": control.run_id,
            "trigger": control.trigger.value,
            "scheduledFor": isoformat(control.scheduled_for) if control.scheduled_for else None,
        }
        if control.user:
            details["user"] = control.user
        try:
            job = await runs.jobs.create(
                f"task {spec.name}"[:255], JOB_TYPE, status=JobStatus.RUNNING, log=f"run {control.run_id} started", details=details
            )
        except VareonError as exc:
            # The run's row is the record that matters; a missing job is logged, not fatal.
            log.warning("task %s: run %s has no job: %s", spec.id, control.run_id, exc)
        else:
            self.job_id = job.id
        finally:
            self._job_done.set()

    async def _act(self) -> tuple[RunStatus, ActionOutcome]:
        """Run the action under the timeout; never raises but for a cancellation from outside."""
        runs, control, spec = self.runs, self.control, self.control.spec
        try:
            action = runs.actions.action(spec.action)
            params: BaseModel = runs.actions.validate(spec.action, spec.parameters, check=False)
        except ServiceError as exc:
            self.log(f"cannot run: {exc.message}")
            return RunStatus.FAILED, ActionOutcome(ok=False, error=exc.message)
        ctx = ActionContext(task_id=spec.id, run_id=control.run_id, registry=runs.registry, bus=runs.bus, log=self.log)
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

    async def _finish(self, start: datetime, status: RunStatus, outcome: ActionOutcome) -> None:
        """Write the final row (and prune), finish the job, publish ``finished``."""
        runs, control, spec = self.runs, self.control, self.control.spec
        end = runs.now()
        error = outcome.error if status is not RunStatus.SUCCEEDED else None
        logs = self.log.text
        keep = runs.settings.runs_keep
        run_id = control.run_id
        job_id = self.job_id

        def finish(session: Session) -> bool:
            record = session.get(TaskRunRecord, run_id)
            if record is None:
                return False  # the task was deleted meanwhile
            record.end_time = end
            record.status = status.value
            record.exit_code = outcome.exit_code
            record.http_status = outcome.http_status
            record.error = error
            record.logs = logs
            record.job_id = job_id
            session.flush()
            _prune(session, spec.id, keep)
            return True

        async def finish_row() -> None:
            try:
                await runs.store.write(finish)
            except VareonError as exc:
                log.error("task %s: run %s ended %s but could not be recorded: %s", spec.id, run_id, status.value, exc)

        async def finish_job() -> None:
            if job_id is None:
                return
            summary = f"run {run_id} {status.value}" + (f": {error}" if error else "")
            try:
                await runs.jobs.finish(job_id, ok=status is RunStatus.SUCCEEDED, log=summary[:4096], details={"status": status.value})
            except VareonError as exc:
                log.warning("task %s: the job of run %s could not be finished: %s", spec.id, run_id, exc)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(finish_row)
            nursery.start_soon(finish_job)
        seconds = (end - start).total_seconds()
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
                "error": error,
                "seconds": seconds,
            },
        )
