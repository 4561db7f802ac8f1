"""Bulk create (issue 23, point 13; decision 0029): many tasks in one transaction, all or none,
each under the rules of a single create, scheduled in one step, and firing like any other."""

from __future__ import annotations

import sys
from datetime import datetime, timedelta, timezone

import pytest
import trio
from sched_support import DAY, EPOCH, Module, SchedKit, principal, settled, task_body

from actors.myntrix.scheduler import BULK_MAX, RunStatus
from vareon_runtime.auth import Role
from vareon_runtime.errors import InvalidRequestError, PermissionDeniedError

UTC = timezone.utc


async def test_a_bulk_create_writes_every_task_in_order_and_schedules_the_enabled_ones(sched_module: Module) -> None:
    tasks = sched_module.tasks
    bodies = [task_body(f"{i % 60} * * * *", name=f"job-{i}") for i in range(200)]
    bodies.append(task_body(name="paused", enabled=False))
    created = await tasks.create_many({"tasks": bodies}, by=principal(Role.OPERATOR, "ops"))
    assert created.count == 201 and len(set(created.ids)) == 201
    wire = created.model_dump(mode="json", by_alias=True)
    assert set(wire) == {"count", "ids"}

    page = await tasks.list(limit=500)
    assert page.total == 201
    by_id = {task.id: task for task in page.items}
    assert [by_id[task_id].name for task_id in created.ids] == [body["name"] for body in bodies]
    assert {task.created_by for task in page.items} == {"ops"}
    assert {task.timezone for task in page.items} == {"UTC"} and {task.misfire_grace for task in page.items} == {300.0}
    assert by_id[created.ids[5]].next_run == datetime(2024, 1, 1, 0, 5, tzinfo=UTC)

    schedule = await tasks.next_fire_times()
    assert set(schedule) == set(created.ids[:200])  # the disabled one is not scheduled
    assert schedule[created.ids[0]] == datetime(2024, 1, 1, 1, 0, tzinfo=UTC)
    assert schedule[created.ids[59]] == datetime(2024, 1, 1, 0, 59, tzinfo=UTC)


async def test_one_bad_task_refuses_them_all_naming_each_index_and_field(sched_module: Module) -> None:
    tasks = sched_module.tasks
    bodies = [task_body(name=f"ok-{i}") for i in range(6)]
    bodies[1] = task_body("61 * * * *", name="bad minute")
    bodies[3] = task_body(parameters={"sleep": -1})
    bodies[4] = task_body(kind="mail")
    bodies[5] = task_body(timezone="Nowhere/Town")
    with pytest.raises(InvalidRequestError) as caught:
        await tasks.create_many({"tasks": bodies}, by=principal(Role.OPERATOR))
    error = caught.value
    assert error.message.startswith("tasks.1.schedule: cron expression '61 * * * *' is invalid")
    assert error.message.endswith("(and 3 more); none of the 6 tasks was created")
    assert [problem["loc"] for problem in error.details] == [
        ["tasks", 1, "schedule"],
        ["tasks", 3, "parameters", "sleep"],
        ["tasks", 4, "action"],
        ["tasks", 5, "timezone"],
    ]
    assert "known: record, script" in error.details[2]["msg"]
    assert (await tasks.list()).total == 0 and await tasks.next_fire_times() == {}

    with pytest.raises(InvalidRequestError, match="invalid TaskBulkCreate") as caught:
        await tasks.create_many({"tasks": [task_body(), {"name": "no schedule"}]}, by=principal(Role.OPERATOR))
    assert ("tasks", 1, "schedule") in [tuple(problem["loc"]) for problem in caught.value.details]
    with pytest.raises(InvalidRequestError, match="invalid TaskBulkCreate"):
        await tasks.create_many({"tasks": []}, by=principal(Role.OPERATOR))
    with pytest.raises(InvalidRequestError, match="invalid TaskBulkCreate"):
        await tasks.create_many({"tasks": [task_body()] * (BULK_MAX + 1)}, by=principal(Role.OPERATOR))
    assert (await tasks.list()).total == 0


async def test_script_tasks_in_a_bulk_create_need_an_admin(sched_module: Module) -> None:
    tasks = sched_module.tasks
    script = task_body(kind="script", name="backup", parameters={"argv": [sys.executable, "-c", "print(1)"]})
    bodies = [task_body(name="a"), task_body("99 * * * *"), script, script]
    with pytest.raises(PermissionDeniedError) as caught:
        await tasks.create_many({"tasks": bodies}, by=principal(Role.OPERATOR))
    error = caught.value
    # 403 first, as for one task: the bad schedule of task 1 is not even looked at.
    assert error.message == (
        "tasks.2.action: only an admin may create a script task (it executes on the host); you are operator"
        " (and 1 more); none of the 4 tasks was created"
    )
    assert [problem["loc"] for problem in error.details] == [["tasks", 2, "action"], ["tasks", 3, "action"]]
    assert (await tasks.list()).total == 0

    created = await tasks.create_many({"tasks": [bodies[0], script]}, by=principal(Role.ADMIN, "root"))
    assert created.count == 2
    assert {task.action for task in (await tasks.list()).items} == {"record", "script"}


async def test_tasks_created_in_bulk_fire_on_their_minute(
    sched_autojump: trio.abc.Clock, sched_kit: SchedKit, sched_module: Module
) -> None:
    tasks = sched_module.tasks
    with trio.fail_after(DAY):
        created = await tasks.create_many(
            {"tasks": [task_body("*/1 * * * *", name=f"t{i}") for i in range(300)]}, by=principal(Role.OPERATOR)
        )
        await trio.sleep_until(60)  # wall time 00:01:30: the 00:01 fire time has passed
        for task_id in created.ids:
            await tasks.update(task_id, {"enabled": False}, by=principal(Role.OPERATOR))
        runs = await settled(tasks)
    minute = EPOCH.replace(second=0) + timedelta(minutes=1)
    first = [call for call in sched_kit.record.calls if call.task_id in set(created.ids)]
    assert sorted(call.task_id for call in first if call.at < minute + timedelta(seconds=30)) == sorted(created.ids)
    assert all(call.at >= minute for call in first)
    assert {run.status for run in runs} == {RunStatus.SUCCESS}
    assert {run.scheduled_for for run in runs if run.task_id in set(created.ids)} >= {minute}
