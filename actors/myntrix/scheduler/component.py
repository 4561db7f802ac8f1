"""The scheduler module as a runtime component (entry point ``vareon.components: scheduler``).

:class:`SchedulerModule` is the ``scheduler`` child of the root supervisor (order 20: after
Myntrix, whose ``jobs`` table and agents its runs use), registered as ``scheduler``; asked
:class:`~actors.myntrix.scheduler.messages.GetTasks` it answers the
:class:`~actors.myntrix.scheduler.tasks.Tasks` face (see :func:`tasks_of`).

Starting, it marks the runs a crashed runtime left ``running`` as ``failed`` (and their jobs)
and stops the process groups their scripts left running, then runs its own supervisor (``rest_for_one``) over three children: ``run-recorder``, the
:class:`~actors.myntrix.scheduler.recorder.RunRecorder` writing the runs' rows and jobs in
batches, then ``task-runs``, the
:class:`~vareon_runtime.dynamic_supervisor.DynamicSupervisor` of the runs (each a temporary
child ``<run id>``, a :class:`~actors.myntrix.scheduler.run.RunWorker`), then ``scheduler``, the
:class:`~actors.myntrix.scheduler.scheduler.TaskScheduler` actor. A crash of the scheduler
restarts it alone, with its runs untouched; it reloads the tasks from the table.

Stopping, it first stops the scheduler (no new runs), then cancels every live run at once, each
ending ``cancelled`` with the reason (a script's process group gets SIGTERM, its stop timeout,
SIGKILL), then lets the supervisor stop the actors, the recorder last, so that it writes how every run
ended. Tasks and their last fire times are in the
table, so the schedule resumes with the runtime; what it missed meanwhile is a misfire.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

import trio
from sqlalchemy import select
from sqlalchemy.orm import Session

from drivers.errors import ProcessBrokenError
from drivers.process import reap_orphan_group
from vareon_runtime.actor import Actor, handles
from vareon_runtime.bus import EventBus
from vareon_runtime.clock import utcnow
from vareon_runtime.component import Component, RuntimeContext
from vareon_runtime.dynamic_supervisor import DynamicSupervisor
from vareon_runtime.errors import VareonError
from vareon_runtime.registry import Registry
from vareon_runtime.store import Store
from vareon_runtime.supervisor import Backoff, ChildSpec, Strategy, Supervisor

from ..jobs import Jobs
from .actions import ACTIONS, ActionRegistry
from .messages import GetTasks
from .models import TaskRunRecord
from .recorder import RunRecorder
from .runs import Runs
from .scheduler import TaskScheduler
from .schemas import RunStatus
from .settings import SchedulerSettings
from .tasks import Tasks

__all__ = ["SCHEDULER_NAME", "SCHEDULER_ORDER", "SchedulerModule", "scheduler_component", "tasks_of"]

log = logging.getLogger("vareon.myntrix.scheduler")

SCHEDULER_NAME = "scheduler"
"""The module's child name under the root supervisor, and so its registry name."""

SCHEDULER_ORDER = 20
"""After Myntrix (10): runs report into its jobs table and act on its agents."""

INTERRUPTED = "the runtime stopped (crash or kill) while this run was running"


class SchedulerModule(Actor):
    """The scheduler module: the runs supervisor, the scheduler actor, the :class:`Tasks` face.

    Args:
        store, bus, registry: the runtime's.
        settings: the module's tunables.
        actions: the action kinds (the runtime's :data:`ACTIONS` unless a test or the
            benchmark passes its own registry).
        now: wall-clock time (aware UTC); tests pass a simulated clock.
    """

    def __init__(
        self,
        store: Store,
        bus: EventBus,
        registry: Registry,
        *,
        settings: SchedulerSettings | None = None,
        actions: ActionRegistry = ACTIONS,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        super().__init__()
        self.settings = settings or SchedulerSettings()
        self.store = store
        self.registry = registry
        self.now = now
        self.runs_supervisor = DynamicSupervisor("task-runs", shutdown=self.settings.shutdown_timeout)
        self.recorder = RunRecorder(store, keep=self.settings.runs_keep)
        self.runs = Runs(
            bus,
            registry,
            Jobs(store),
            self.recorder,
            actions,
            settings=self.settings,
            now=now,
            supervisor=lambda: self.runs_supervisor,
        )

        def runs_supervisor() -> DynamicSupervisor:
            # A fresh supervisor per (re)start; Runs finds the current one.
            self.runs_supervisor = DynamicSupervisor("task-runs", shutdown=self.settings.shutdown_timeout)
            return self.runs_supervisor

        self.supervisor = Supervisor(
            "scheduler",
            [
                # The same recorder on a restart: what it holds is not lost with its loop.
                ChildSpec("run-recorder", lambda: self.recorder, shutdown=self.recorder.stop_timeout + 1.0),
                ChildSpec("task-runs", runs_supervisor, shutdown=self.settings.shutdown_timeout),
                ChildSpec("scheduler", lambda: TaskScheduler(store, self.runs, settings=self.settings, now=now)),
            ],
            strategy=Strategy.REST_FOR_ONE,
            max_restarts=5,
            period=60.0,
            backoff=Backoff(0.1, 5.0),
            bus=bus,
            shutdown_timeout=self.settings.shutdown_timeout + self.recorder.stop_timeout + 5.0,
        )
        self.tasks: Tasks | None = None

    async def on_start(self) -> None:
        await self._recover()
        await self.nursery.start(self._supervise)
        self.tasks = Tasks(
            self.store,
            self.supervisor.ref("scheduler"),
            self.runs,
            actions=self.runs.actions,
            settings=self.settings,
            now=self.now,
        )

    @handles(GetTasks)
    async def get_tasks(self, msg: GetTasks) -> Tasks:
        assert self.tasks is not None, "the face exists before the module answers"
        return self.tasks

    async def _recover(self) -> None:
        """Mark the runs a crashed runtime left ``running`` as failed, and their jobs; stop the
        process groups they left running (identified by pid and creation time)."""
        end = self.now()

        def interrupted(session: Session) -> list[tuple[str | None, int | None, float | None]]:
            rows = session.scalars(select(TaskRunRecord).where(TaskRunRecord.status == RunStatus.RUNNING.value)).all()
            for row in rows:
                row.status = RunStatus.FAILED.value
                row.end_time = end
                row.error = INTERRUPTED
            return [(row.job_id, row.pid, row.process_create_time) for row in rows]

        left = await self.store.write(interrupted)
        if not left:
            return
        log.warning("scheduler: %d runs were interrupted by the last stop of the runtime; marked failed", len(left))
        jobs = self.runs.jobs
        for job_id, pid, create_time in left:
            if pid is not None:
                try:
                    if await reap_orphan_group(pid, create_time, timeout=self.settings.run_shutdown):
                        log.warning("scheduler: stopped pid %d, left running by an interrupted run", pid)
                except ProcessBrokenError as exc:
                    log.error("scheduler: the process group of an interrupted run: %s", exc)
            if job_id is None:
                continue
            try:
                await jobs.finish(job_id, ok=False, log=INTERRUPTED)
            except VareonError:
                pass  # already finished, or gone: nothing to correct

    async def _supervise(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the module's supervisor until cancelled; then stop the scheduler, cancel every run
        at once, and only then let the supervisor stop the actors."""
        supervisor = self.supervisor
        # Once started, the supervisor is shielded: it is stopped below, after the runs. While it
        # starts it is not, so a cancellation then (a stop during boot) reaches it directly; a
        # shielded start would never report started to a cancelled caller, nor ever stop.
        shield = trio.CancelScope()

        async def supervise(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
            with shield:
                await supervisor.run(task_status=task_status)

        async with trio.open_nursery() as nursery:
            await nursery.start(supervise)
            shield.shield = True
            task_status.started()
            try:
                await trio.sleep_forever()
            finally:
                with trio.CancelScope(shield=True) as scope:
                    scope.deadline = trio.current_time() + self.settings.shutdown_timeout
                    try:
                        await self._stop_runs()
                    finally:
                        await supervisor.stop()  # also when the runs took the whole budget
                shield.shield = False  # a supervisor that overruns it is cancelled

    async def _stop_runs(self) -> None:
        runs = self.runs
        runs.closing = True  # nothing new is booked from here on
        try:
            await self.supervisor.terminate_child("scheduler")
        except VareonError as exc:
            log.warning("scheduler: stopping the scheduler actor: %s", exc)
        live = runs.live()
        if live:
            log.info("scheduler: cancelling %d running task runs", len(live))
            left = await runs.cancel(live, "the runtime is stopping", timeout=self.settings.run_shutdown)
            if left:
                log.error("scheduler: %d task runs did not stop within %gs", len(left), self.settings.run_shutdown)


async def tasks_of(registry: Registry, *, timeout: float = 5.0) -> Tasks:
    """The :class:`Tasks` face of the runtime whose registry this is.

    Raises:
        NotRegisteredError: the scheduler module is not running (not installed, or disabled).
    """
    tasks: Tasks = await registry.lookup(SCHEDULER_NAME).ask(GetTasks(), timeout=timeout)
    return tasks


def scheduler_component(ctx: RuntimeContext) -> Component:
    """The ``scheduler`` child of the root supervisor, its settings from ``[myntrix]``."""
    configured = ctx.config.myntrix
    settings = SchedulerSettings(
        timezone=configured.scheduler_timezone,
        misfire_grace=configured.task_misfire_grace,
        runs_keep=configured.task_runs_keep,
    )

    def factory() -> SchedulerModule:
        return SchedulerModule(ctx.store, ctx.bus, ctx.registry, settings=settings)

    return Component(
        spec=ChildSpec(SCHEDULER_NAME, factory, shutdown=settings.shutdown_timeout + 20.0),
        order=SCHEDULER_ORDER,
    )
