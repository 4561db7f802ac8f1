"""The scheduler module as a runtime component (entry point ``vareon.components: scheduler``).

:class:`SchedulerModule` is the ``scheduler`` child of the root supervisor (order 20: after the
agents its runs may act on), a :class:`~actors.kit.module.DomainModule` providing the
:class:`~actors.myntrix.scheduler.service.Tasks` face.

Starting, it marks the runs a crashed runtime left ``running`` as ``failed`` (and their jobs)
and stops the processes their scripts left running (by pid and creation time, and by their owner
mark), then runs its own supervisor (``rest_for_one``) over three children: ``run-recorder``,
the kit's :class:`~actors.kit.recorder.Recorder` writing the runs' rows and jobs in batches, then
``task-runs``, the :class:`~vareon_runtime.dynamic_supervisor.DynamicSupervisor` of the runs
(each a temporary child ``<run id>``, a :class:`~actors.myntrix.scheduler.run.TaskRunWorker`),
then ``scheduler``, the :class:`~actors.myntrix.scheduler.actor.TaskScheduler` actor. A crash of the scheduler
restarts it alone, with its runs untouched; it reloads the tasks from the table.

The component wires the runtime's ``[outbound]`` rule and the accounts' current roles
(:class:`~actors.myntrix.scheduler.actions.Outbound`) into the face and the runs: an ``api``
task's destination is checked when the task is defined and at each run, with its creator's role
(docs/decisions/0024-outbound-destinations.md).

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

from actors.kit.jobs import Jobs
from actors.kit.module import DomainModule
from actors.kit.recorder import Recorder
from drivers.errors import ProcessBrokenError
from drivers.orphans import reap_orphan_group
from drivers.outbound import OutboundGuard
from vareon_runtime.auth import Role
from vareon_runtime.bus import EventBus
from vareon_runtime.clock import utcnow
from vareon_runtime.component import Component, RuntimeContext
from vareon_runtime.dynamic_supervisor import DynamicSupervisor
from vareon_runtime.errors import NotFoundError, VareonError
from vareon_runtime.registry import Registry
from vareon_runtime.store import Store
from vareon_runtime.supervisor import Backoff, ChildSpec, Strategy, Supervisor

from ..config import SECTION, MyntrixConfig
from .actions import ACTIONS, ActionRegistry, Outbound
from .actor import TaskScheduler
from .models import TASK_RUNS
from .run import owner_mark
from .runs import TaskRuns
from .service import Tasks
from .settings import SchedulerSettings

__all__ = ["SCHEDULER_NAME", "SchedulerModule", "component"]

log = logging.getLogger("vareon.myntrix.scheduler")

SCHEDULER_NAME = "scheduler"
"""The module's child name under the root supervisor, and so its registry name."""

INTERRUPTED = "the runtime stopped (crash or kill) while this run was running"


class SchedulerModule(DomainModule):
    """The scheduler module: the runs' recorder and supervisor, the scheduler actor, the
    :class:`Tasks` face.

    Args:
        store, bus, registry: the runtime's.
        settings: the module's tunables.
        actions: the action kinds (the runtime's :data:`ACTIONS` unless a test or the
            benchmark passes its own registry).
        now: wall-clock time (aware UTC); tests pass a simulated clock.
        outbound: the ``[outbound]`` rule and the creators' roles (the component wires the
            runtime's; by default no allow-list and no admin known).
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
        outbound: Outbound | None = None,
    ) -> None:
        self.settings = settings = settings or SchedulerSettings()
        self.outbound = outbound = outbound or Outbound()
        self.store = store
        self.bus = bus
        self.now = now
        self.runs_supervisor = DynamicSupervisor("task-runs", shutdown=settings.shutdown_timeout)
        self.recorder = Recorder(store, Jobs(store, bus), TASK_RUNS, keep=settings.runs_keep)
        self.runs = TaskRuns(
            bus, registry, self.recorder, actions, settings=settings, now=now, supervisor=lambda: self.runs_supervisor,
            outbound=outbound,
        )

        def runs_supervisor() -> DynamicSupervisor:
            # A fresh supervisor per (re)start; the runs find the current one.
            self.runs_supervisor = DynamicSupervisor("task-runs", shutdown=settings.shutdown_timeout)
            return self.runs_supervisor

        supervisor = Supervisor(
            "scheduler",
            [
                # The same recorder on a restart: what it holds is not lost with its loop.
                ChildSpec("run-recorder", lambda: self.recorder, shutdown=self.recorder.stop_timeout + 1.0),
                ChildSpec("task-runs", runs_supervisor, shutdown=settings.shutdown_timeout),
                ChildSpec("scheduler", lambda: TaskScheduler(store, self.runs, settings=settings, now=now)),
            ],
            strategy=Strategy.REST_FOR_ONE,
            max_restarts=5,
            period=60.0,
            backoff=Backoff(0.1, 5.0),
            bus=bus,
            shutdown_timeout=settings.shutdown_timeout + self.recorder.stop_timeout + 5.0,
        )
        # The face exists once the scheduler actor does (boot); the kit provides it then.
        self.tasks: Tasks | None = None
        super().__init__(registry, supervisor, None, shutdown_timeout=settings.shutdown_timeout)

    async def start_services(self) -> None:
        # No reaper loop of adopted processes here (the agents module runs one): a run stops
        # everything carrying its mark when it ends, and reaps what it killed.
        await self._recover()

    async def boot(self) -> None:
        self.tasks = self.face = Tasks(
            self.store,
            self.bus,
            self.supervisor.ref("scheduler"),
            self.runs,
            actions=self.runs.actions,
            settings=self.settings,
            now=self.now,
            outbound=self.outbound,
        )

    async def _recover(self) -> None:
        """Mark the runs a crashed runtime left ``running`` as failed, and their jobs; stop the
        processes they left running."""
        left = await self.recorder.recover(INTERRUPTED, now=self.now())
        if not left:
            return
        log.warning("scheduler: %d runs were interrupted by the last stop of the runtime; marked failed", len(left))
        for run in left:
            if run.pid is None:
                continue
            try:
                if await reap_orphan_group(
                    run.pid, run.create_time, timeout=self.settings.run_shutdown, owner=owner_mark(run.run_id)
                ):
                    log.warning("scheduler: stopped pid %d, left running by an interrupted run", run.pid)
            except ProcessBrokenError as exc:
                log.error("scheduler: the processes of an interrupted run: %s", exc)

    async def drain(self) -> None:
        """No new runs, then every live run cancelled at once (each ends ``cancelled``)."""
        runs = self.runs
        runs.book.closing = True  # nothing new is booked from here on
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


def _build(ctx: RuntimeContext) -> ChildSpec:
    configured = ctx.config.section(MyntrixConfig)
    settings = SchedulerSettings(
        timezone=configured.scheduler_timezone,
        misfire_grace=configured.task_misfire_grace,
        runs_keep=configured.task_runs_keep,
    )

    auth = ctx.auth

    async def role_of(username: str) -> Role | None:
        # Read from the table, not a token: the creator's role now (demoted, disabled, gone).
        try:
            user = await auth.get_user_by_username(username)
        except NotFoundError:
            return None
        return user.role if user.is_active else None

    outbound = Outbound(OutboundGuard(ctx.config.outbound.allow), role_of)

    def factory() -> SchedulerModule:
        return SchedulerModule(ctx.store, ctx.bus, ctx.registry, settings=settings, outbound=outbound)

    return ChildSpec(SCHEDULER_NAME, factory, shutdown=settings.shutdown_timeout + 20.0)


component = Component(
    name=SCHEDULER_NAME, build=_build, order=20, config=SECTION, migrations="actors.myntrix.scheduler.migrations"
)
"""The ``scheduler`` component."""
