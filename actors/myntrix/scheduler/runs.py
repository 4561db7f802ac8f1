"""``TaskRuns``: the runs of a scheduler module: booking, starting, skipping and cancelling them.

The scheduler actor and the :class:`~actors.myntrix.scheduler.service.Tasks` face start runs
through it, in two synchronous steps: :meth:`TaskRuns.reserve` checks the overlap policy
against the live runs in the book (:class:`~actors.kit.runs.RunBook`) and books the new one,
:meth:`TaskRuns.start` adds it as the child ``<run id>``, a
:class:`~actors.myntrix.scheduler.run.TaskRunWorker`, to the ``task-runs``
:class:`~vareon_runtime.dynamic_supervisor.DynamicSupervisor` and notes its start with the
recorder. Neither waits, so the runs due at one instant all start in the scheduler's one sweep,
before the recorder writes any of them. A fire time that does not run (overlap, misfire) is
recorded by :meth:`TaskRuns.skip`; :meth:`TaskRuns.cancel` stops runs (the task was deleted, the
runtime is stopping). Rows are written by the module's :class:`~actors.kit.recorder.Recorder`.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import datetime

from actors.kit.recorder import Recorder
from actors.kit.runs import RunBook
from actors.kit.states import RunState
from vareon_runtime.bus import EventBus
from vareon_runtime.clock import isoformat
from vareon_runtime.dynamic_supervisor import DynamicSupervisor
from vareon_runtime.errors import NotFoundError, UnavailableError, VareonError
from vareon_runtime.registry import Registry

from .actions import ActionRegistry, Outbound
from .errors import TaskBusyError
from .messages import TaskSpec
from .run import TaskRunControl, TaskRunWorker, run_topic
from .schemas import TASK_RUN_WORDS, Overlap, RunTrigger, TaskRun
from .settings import SchedulerSettings

__all__ = ["TaskRuns"]

log = logging.getLogger("vareon.myntrix.scheduler.runs")


class TaskRuns:
    """The runs of one scheduler module (see the module docstring).

    Args:
        bus, registry: the runtime's.
        recorder: where the runs' rows and jobs are written.
        actions: the action kinds (the global registry, or a private one in tests and benches).
        settings: the module's tunables.
        now: wall-clock time for the records.
        supervisor: the ``task-runs`` supervisor of the runs, a callable as it is replaced on
            restart.
        outbound: the ``[outbound]`` rule and the creators' roles, for the runs' actions.
    """

    def __init__(
        self,
        bus: EventBus,
        registry: Registry,
        recorder: Recorder,
        actions: ActionRegistry,
        *,
        settings: SchedulerSettings,
        now: Callable[[], datetime],
        supervisor: Callable[[], DynamicSupervisor],
        outbound: Outbound | None = None,
    ) -> None:
        self.bus = bus
        self.registry = registry
        self.recorder = recorder
        self.actions = actions
        self.settings = settings
        self.now = now
        self.supervisor = supervisor
        self.outbound = outbound or Outbound()
        self.book: RunBook[TaskRunControl] = RunBook()

    @property
    def closing(self) -> bool:
        """Whether the module is stopping (nothing new is booked)."""
        return self.book.closing

    def live(self, task_id: str | None = None) -> list[TaskRunControl]:
        """The booked runs of a task (every task's when None), oldest first."""
        return self.book.live(task_id)

    def reserve(
        self,
        spec: TaskSpec,
        trigger: RunTrigger,
        scheduled_for: datetime | None,
        *,
        note: str | None = None,
        user: str | None = None,
    ) -> TaskRunControl | None:
        """Book a run of ``spec`` unless its overlap policy forbids one now (then None)."""
        control = TaskRunControl(owner_id=spec.id, spec=spec, trigger=trigger, scheduled_for=scheduled_for, note=note, user=user)
        limit = 1 if spec.overlap is Overlap.SKIP else None
        return control if self.book.book(control, limit=limit) else None

    def start(self, control: TaskRunControl) -> None:
        """Start the booked run as the child ``<run id>`` and note its start with the recorder;
        on failure the booking is released.

        Raises:
            SupervisorStoppedError: the ``task-runs`` supervisor is stopping (the module is).
        """
        worker = TaskRunWorker(
            control, book=self.book, recorder=self.recorder, bus=self.bus, registry=self.registry,
            actions=self.actions, now=self.now, log_max=self.settings.log_max, outbound=self.outbound,
        )  # fmt: skip
        try:
            self.supervisor().start_child(control.run_id, worker)
        except VareonError as exc:
            control.error = exc
            self.book.release(control)
            raise
        worker.note_start()

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
            self.start(control)
        except VareonError as exc:
            raise UnavailableError(f"the run of task {spec.name!r} could not start: {exc}") from exc
        record = control.record
        assert record is not None and control.started is not None, "noted as the run was started"
        # No deadline: the recorder sets `inserted` on every path (written, given up, stopped).
        await record.inserted.wait()
        if record.error is not None:
            raise UnavailableError(f"the run of task {spec.name!r} could not be recorded: {record.error}")
        return control.started

    async def skip(self, spec: TaskSpec, scheduled_for: datetime, reason: str) -> None:
        """Record a fire time that did not run (overlap or misfire), with the reason."""
        now = self.now()
        run_id = str(uuid.uuid4())
        note = self.recorder.skipped(
            {
                "id": run_id,
                "task_id": spec.id,
                "scheduled_for": scheduled_for,
                "start_time": now,
                "end_time": now,
                "status": RunState.SKIPPED.value,
                "trigger": RunTrigger.CRON.value,
                "error": reason,
            }
        )
        await note.written.wait()
        if note.error is not None:
            if not isinstance(note.error, NotFoundError):  # not: the task was deleted meanwhile
                log.error("task %s: the skipped fire time %s could not be recorded: %s", spec.id, scheduled_for, note.error)
            return
        log.info("task %s (%s): fire time %s skipped: %s", spec.id, spec.name, isoformat(scheduled_for), reason)
        self.bus.publish(
            run_topic(spec.id),
            {
                "event": "skipped",
                "taskId": spec.id,
                "runId": run_id,
                "status": TASK_RUN_WORDS.wire(RunState.SKIPPED).value,
                "scheduledFor": isoformat(scheduled_for),
                "error": reason,
            },
        )

    async def cancel(
        self, controls: list[TaskRunControl], reason: str, *, by: str | None = None, timeout: float
    ) -> list[TaskRunControl]:
        """Cancel ``controls`` at once and wait up to ``timeout`` seconds for them to end.

        Returns:
            The runs that had not ended by then.
        """
        return await self.book.cancel(controls, reason, by=by, timeout=timeout)
