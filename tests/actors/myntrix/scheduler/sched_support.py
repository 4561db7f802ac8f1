"""Helpers of the scheduler tests: the module under a root supervisor on a real store, a
simulated wall clock driven by trio's clock, and a ``record`` action kind in a private
registry (the plug-in point the scheduler takes, not a mock): each run is appended to a list."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import trio
import trio.testing
from pydantic import BaseModel, Field

from actors.myntrix.scheduler import (
    ActionContext,
    ActionOutcome,
    ActionRegistry,
    SchedulerModule,
    SchedulerSettings,
    Tasks,
    TaskRun,
)
from actors.myntrix.scheduler.actions import ActionParameters, ScriptAction
from vareon_runtime.auth import Principal, Role
from vareon_runtime.bus import EventBus
from vareon_runtime.registry import Registry
from vareon_runtime.store import Store
from vareon_runtime.supervisor import ChildSpec, Supervisor

TIMEOUT = 30.0
DAY = 86400.0

# A Monday, 00:00:30 UTC: creation lands between two minute boundaries.
EPOCH = datetime(2024, 1, 1, 0, 0, 30, tzinfo=timezone.utc)


def principal(role: Role | str, user: str = "tester") -> Principal:
    """A caller of ``role`` (what a route hands the face)."""
    return Principal(user_id="00000000-0000-0000-0000-0000000000aa", username=user, role=Role(role))


def bound() -> float:
    """Seconds a helper waits at most: TIMEOUT of real time, or a simulated day under a
    MockClock (a store read taking a few real milliseconds lets simulated time leap to the
    next deadline, so a short simulated bound would fire while the read is still going)."""
    return DAY if isinstance(trio.lowlevel.current_clock(), trio.testing.MockClock) else TIMEOUT


class SimClock:
    """Wall time = ``start`` + trio's clock + ``offset`` (a test moves ``offset`` to make the
    wall clock jump, or to start a module "later", after a downtime)."""

    def __init__(self, start: datetime = EPOCH) -> None:
        self.start = start
        self.offset = timedelta(0)
        self._t0: float | None = None  # trio's clock at the first reading (0 under a MockClock)

    def __call__(self) -> datetime:
        now = trio.current_time()
        if self._t0 is None:
            self._t0 = now if now > 1.0 else 0.0
        return self.start + self.offset + timedelta(seconds=now - self._t0)


class RecordParameters(ActionParameters):
    """``record``: note the call; optionally take ``sleep`` seconds (trio's clock) or fail."""

    sleep: float = Field(0.0, ge=0)
    fail: bool = False
    explode: bool = False
    say: str | None = None


@dataclass
class Call:
    task_id: str
    run_id: str
    at: datetime


@dataclass
class RecordAction:
    """A real action of the private registry: records each call with the wall time."""

    now: Callable[[], datetime]
    calls: list[Call] = field(default_factory=list)
    kind: str = "record"
    parameters: type[BaseModel] = RecordParameters
    admin_only: bool = False

    def check(self, params: BaseModel) -> None:
        assert isinstance(params, RecordParameters)

    async def run(self, params: BaseModel, ctx: ActionContext) -> ActionOutcome:
        assert isinstance(params, RecordParameters)
        self.calls.append(Call(ctx.task_id, ctx.run_id, self.now()))
        if params.say:
            ctx.log(params.say)
        if params.sleep:
            await trio.sleep(params.sleep)
        if params.explode:
            raise RuntimeError("the record action blew up")
        if params.fail:
            return ActionOutcome(ok=False, exit_code=3, error="asked to fail")
        return ActionOutcome(ok=True)


def registry_with(now: Callable[[], datetime]) -> tuple[ActionRegistry, RecordAction]:
    """A private actions registry with ``record`` and the real ``script``."""
    actions = ActionRegistry()
    record = RecordAction(now)
    actions.register("record", record)
    actions.register("script", ScriptAction())
    return actions, record


@dataclass
class Module:
    """One running scheduler module and how to stop it."""

    tasks: Tasks
    root: Supervisor
    stopped: trio.Event
    module: Callable[[], SchedulerModule]

    async def stop(self) -> None:
        await self.root.stop()
        with trio.fail_after(bound()):
            await self.stopped.wait()


@dataclass
class SchedKit:
    """The kernel services the module runs on."""

    store: Store
    nursery: trio.Nursery
    now: Callable[[], datetime]
    actions: ActionRegistry
    record: RecordAction
    bus: EventBus = field(default_factory=EventBus)
    settings: SchedulerSettings = field(default_factory=lambda: SchedulerSettings(run_shutdown=10.0, shutdown_timeout=20.0, runs_keep=5000))
    registry: Registry = field(default_factory=Registry)

    async def start(self, **settings: Any) -> Module:
        """Start the module as a runtime would (each start gets a fresh registry)."""
        self.registry = Registry()
        store, bus, registry, actions, now = self.store, self.bus, self.registry, self.actions, self.now
        chosen = SchedulerSettings(**{**self.settings.__dict__, **settings}) if settings else self.settings
        made: list[SchedulerModule] = []

        def factory() -> SchedulerModule:
            made.append(SchedulerModule(store, bus, registry, settings=chosen, actions=actions, now=now))
            return made[-1]

        root = Supervisor("root", [ChildSpec("scheduler", factory, shutdown=60.0)], registry=registry, bus=bus)
        stopped = trio.Event()

        async def run(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
            try:
                await root.run(task_status=task_status)
            finally:
                stopped.set()

        with trio.fail_after(bound()):
            await self.nursery.start(run)
            return Module(registry.face(Tasks), root, stopped, lambda: made[-1])


def task_body(schedule: str = "*/1 * * * *", kind: str = "record", **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"name": "job", "schedule": schedule, "action": kind, "parameters": {}}
    body.update(overrides)
    return body


async def all_runs(tasks: Tasks, task_id: str | None = None) -> list[TaskRun]:
    """Every run (newest first), through the pages."""
    found: list[TaskRun] = []
    while True:
        page = await tasks.history(task_id=task_id, limit=500, offset=len(found))
        found.extend(page.items)
        if len(found) >= page.total or not page.items:
            return found


async def settled(tasks: Tasks, task_id: str | None = None) -> list[TaskRun]:
    """Wait until no run of the task is live; answers every run (newest first)."""
    with trio.fail_after(bound()):
        while tasks.runs.live(task_id):
            await trio.sleep(0.01)
    runs = await all_runs(tasks, task_id)
    assert all(run.status.value != "running" for run in runs), [run for run in runs if run.status.value == "running"]
    return runs


async def until_runs(tasks: Tasks, task_id: str, count: int) -> list[TaskRun]:
    """Wait until the task has ``count`` runs and none is live; answers every run."""
    with trio.fail_after(bound()):
        while True:
            runs = await all_runs(tasks, task_id)
            if len(runs) >= count and not tasks.runs.live(task_id):
                return await settled(tasks, task_id)
            await trio.sleep(0.01)
