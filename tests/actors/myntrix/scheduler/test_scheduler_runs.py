"""Runs for real: a script task's output and exit code, a timeout that kills the process group,
the module stopping mid-run, persistence across a runtime restart (SQLite and PostgreSQL)."""

from __future__ import annotations

import sys
from datetime import timedelta
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import psutil
import pytest
import trio
from sched_support import SchedKit, SimClock, TIMEOUT, principal, registry_with, settled, task_body, until_runs
from sqlalchemy import inspect
from sqlalchemy.orm import Session

from actors.kit.component import component as jobs_component
from actors.myntrix.scheduler import RunStatus, Tasks
from actors.myntrix.scheduler.component import component as scheduler_component
from vareon_runtime.auth import Role
from vareon_runtime.config import load_config
from vareon_runtime.runtime import Runtime
from vareon_runtime.store import Base, Store

SCHEDULER_TABLES = {"scheduled_tasks", "task_runs"}


def test_the_module_is_installed_as_entry_points() -> None:
    components = {point.name: point.value for point in entry_points(group="vareon.components")}
    routes = {point.name: point.value for point in entry_points(group="vareon.routes")}
    assert components["scheduler"] == "actors.myntrix.scheduler.component:component"
    assert routes["tasks"] == "web.tasks:blueprint"
    assert scheduler_component.migrations == "actors.myntrix.scheduler.migrations"


async def test_migrations_match_the_models(database_url: str) -> None:
    def schema(session: Session) -> dict[str, Any]:
        from alembic.autogenerate import compare_metadata
        from alembic.migration import MigrationContext

        connection = session.connection()

        def ours(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
            table = obj if type_ == "table" else getattr(obj, "table", None)
            return table is None or table.name in SCHEDULER_TABLES

        context = MigrationContext.configure(connection, opts={"include_object": ours})
        inspector = inspect(connection)
        return {
            "tables": set(inspector.get_table_names()),
            "heads": set(context.get_current_heads()),
            "foreign_keys": [(fk["name"], fk["options"]) for fk in inspector.get_foreign_keys("task_runs")],
            "diff": [repr(diff) for diff in compare_metadata(context, Base.metadata)],
        }

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            store: Store = await nursery.start(Store(database_url).run)
            found = await store.read(schema)
            await store.close()
    assert SCHEDULER_TABLES <= found["tables"] and "0002_scheduler_run_process" in found["heads"]
    assert found["foreign_keys"] == [("fk_task_runs_task_id_scheduled_tasks", {"ondelete": "CASCADE"})]
    assert found["diff"] == []


def _script(tmp_path: Path, code: str) -> list[str]:
    path = tmp_path / "task.py"
    path.write_text(code)
    return [sys.executable, str(path)]


async def test_a_script_task_runs_for_real_with_its_output_in_the_history(
    tmp_path: Path, sched_kit: SchedKit
) -> None:
    module = await sched_kit.start()
    tasks = module.tasks
    argv = _script(tmp_path, "import sys\nprint('hello from the task')\nprint('oops', file=sys.stderr)\nsys.exit(4)\n")
    task = await tasks.create(
        task_body("*/1 * * * *", kind="script", parameters={"argv": argv, "expectedExitCode": 4}), by=principal(Role.ADMIN)
    )
    with trio.fail_after(TIMEOUT):
        await tasks.run_now(task.id)
        (run,) = await settled(tasks, task.id)
    await module.stop()
    assert run.status is RunStatus.SUCCESS and run.exit_code == 4
    assert run.logs is not None and "hello from the task" in run.logs and "stderr: oops" in run.logs


async def test_a_timeout_kills_the_script_and_its_children_and_marks_the_run(
    tmp_path: Path, sched_kit: SchedKit
) -> None:
    module = await sched_kit.start()
    tasks = module.tasks
    argv = _script(
        tmp_path,
        "import os, subprocess, time\n"
        "child = subprocess.Popen(['sleep', '60'])\n"
        "print(os.getpid(), child.pid, flush=True)\n"
        "time.sleep(60)\n",
    )
    task = await tasks.create(
        task_body("0 0 1 1 *", kind="script", timeout=1.0, parameters={"argv": argv, "stopTimeout": 1}), by=principal(Role.ADMIN)
    )
    with trio.fail_after(TIMEOUT):
        await tasks.run_now(task.id)
        (run,) = await settled(tasks, task.id)
    await module.stop()
    assert run.status is RunStatus.TIMEOUT
    assert run.error == "the run took longer than the task's timeout of 1s and was cancelled"
    pids = [int(word) for word in (run.logs or "").split("\n")[1].split()]
    for pid in pids:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


async def test_a_stop_while_the_module_starts_ends_it(sched_kit: SchedKit) -> None:
    # A SIGTERM during boot: the cancellation arrives while the scheduler actor, the module's
    # last child, is starting (reading its tasks in a store thread), before the module is started.
    async def cancel_when_the_scheduler_starts(boot: trio.CancelScope) -> None:
        while True:
            event = await statuses.receive()
            data = event.data
            if (data["supervisor"], data["name"], data["status"]) == ("scheduler", "scheduler", "starting"):
                boot.cancel()
                return

    with trio.fail_after(TIMEOUT), sched_kit.bus.subscribe("status.actor") as statuses:
        async with trio.open_nursery() as nursery:
            with trio.CancelScope() as boot:
                nursery.start_soon(cancel_when_the_scheduler_starts, boot)
                await sched_kit.start()
        assert boot.cancelled_caught
        await sched_kit.store.write(lambda session: None)  # the store is still usable


async def test_stopping_the_module_cancels_running_runs_and_records_them(sched_kit: SchedKit) -> None:
    module = await sched_kit.start()
    tasks = module.tasks
    task = await tasks.create(task_body(parameters={"sleep": 3600}), by=principal(Role.OPERATOR))
    with trio.fail_after(TIMEOUT):
        await tasks.run_now(task.id)
        await module.stop()
        module = await sched_kit.start()
        (run,) = await settled(module.tasks, task.id)
        await module.stop()
    assert run.status is RunStatus.CANCELLED and run.error == "the runtime is stopping" and run.end_time


async def test_tasks_and_history_survive_a_restart_on_the_same_database(
    nursery: trio.Nursery, database_url: str
) -> None:
    clock = SimClock()
    actions, record = registry_with(clock)

    async def open_kit() -> tuple[Store, SchedKit]:
        store: Store = await nursery.start(Store(database_url).run)
        return store, SchedKit(store, nursery, clock, actions, record)

    with trio.fail_after(TIMEOUT):
        store, kit = await open_kit()
        module = await kit.start()
        task = await module.tasks.create(task_body("*/5 * * * *", name="kept", timezone="Europe/Berlin"), by=principal(Role.OPERATOR))
        await module.tasks.run_now(task.id)
        first = await settled(module.tasks, task.id)
        await module.stop()
        await store.close()

        clock.offset = timedelta(minutes=2)  # back two minutes later: nothing missed
        store, kit = await open_kit()
        module = await kit.start()
        again = await module.tasks.get(task.id)
        assert (again.name, again.schedule, again.timezone, again.enabled) == ("kept", "*/5 * * * *", "Europe/Berlin", True)
        assert [r.id for r in await settled(module.tasks, task.id)] == [r.id for r in first]
        assert (await module.tasks.next_fire_times())[task.id] == task.next_run
        await module.stop()
        await store.close()


async def test_the_real_runtime_runs_the_module_from_its_config(tmp_path: Path) -> None:
    config = load_config(
        None,
        environ={
            "VAREON_RUNTIME_DATA_DIR": str(tmp_path / "data"),
            "VAREON_MYNTRIX_SCHEDULER_TIMEZONE": "Asia/Tokyo",
            "VAREON_MYNTRIX_TASK_MISFIRE_GRACE": "42",
        },
    )

    async def run_once(check: Any) -> Any:
        runtime = Runtime(config, components=[jobs_component, scheduler_component])
        async with trio.open_nursery() as nursery:
            await nursery.start(runtime.run)
            assert runtime.context is not None
            try:
                return await check(runtime.context.registry.face(Tasks))
            finally:
                runtime.stop()

    argv = _script(tmp_path, "print('ran')\n")

    async def first(tasks: Tasks) -> str:
        task = await tasks.create(task_body("0 9 * * *", kind="script", parameters={"argv": argv}), by=principal(Role.ADMIN))
        assert (task.timezone, task.misfire_grace) == ("Asia/Tokyo", 42.0)
        await tasks.run_now(task.id)
        await until_runs(tasks, task.id, 1)
        return task.id

    async def second(tasks: Tasks) -> None:
        (run,) = await until_runs(tasks, task_id, 1)  # kept across the restart
        assert run.status is RunStatus.SUCCESS and run.logs is not None and "ran" in run.logs
        assert task_id in await tasks.next_fire_times()

    with trio.fail_after(TIMEOUT):
        task_id = await run_once(first)
        await run_once(second)


@pytest.mark.parametrize("role", [Role.OPERATOR, Role.VIEWER])
async def test_a_script_task_needs_an_admin_whatever_the_lower_role(role: Role, sched_kit: SchedKit) -> None:
    from vareon_runtime.errors import PermissionDeniedError

    module = await sched_kit.start()
    with pytest.raises(PermissionDeniedError):
        await module.tasks.create(task_body(kind="script", parameters={"argv": [sys.executable]}), by=principal(role))
    await module.stop()
