"""The scheduler over simulated days (autojump_clock): exact fire times, DST, disable, no polling."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import trio
from sched_support import DAY, EPOCH, Module, SchedKit, principal, settled, task_body

from actors.myntrix.scheduler import RunStatus, RunTrigger
from vareon_runtime.auth import Role


async def test_every_minute_for_a_day_fires_exactly_1440_times_at_the_minutes(
    sched_autojump: trio.abc.Clock, sched_kit: SchedKit, sched_module: Module
) -> None:
    tasks = sched_module.tasks
    with trio.fail_after(3 * DAY):
        task = await tasks.create(task_body("*/1 * * * *", overlap="allow"), by=principal(Role.OPERATOR))
        await trio.sleep_until(DAY)  # simulated: wall time is EPOCH + a day
        await tasks.update(task.id, {"enabled": False}, by=principal(Role.OPERATOR))
        runs = await settled(tasks, task.id)
    first = EPOCH.replace(second=0) + timedelta(minutes=1)
    expected = [first + timedelta(minutes=i) for i in range(1440)]  # 00:01 .. 00:00 the next day
    fired = sorted(run.scheduled_for for run in runs)  # type: ignore[type-var]
    # Disabling takes a few simulated minutes of store writes: what fired then is left out.
    assert [t for t in fired if t <= EPOCH + timedelta(days=1)] == expected  # type: ignore[operator]
    assert {run.status for run in runs} == {RunStatus.SUCCESS}
    assert {run.trigger for run in runs} == {RunTrigger.CRON}
    assert len(sched_kit.record.calls) == len(runs)
    assert all(run.job_id is not None for run in runs)


async def test_a_daily_0230_job_in_berlin_runs_once_on_the_autumn_change(
    sched_autojump: trio.abc.Clock, sched_kit: SchedKit
) -> None:
    # 2024-10-27: 03:00 CEST becomes 02:00 CET, so 02:30 happens twice on the wall clock.
    sched_kit.now.start = datetime(2024, 10, 26, 12, 0, tzinfo=timezone.utc)  # type: ignore[attr-defined]
    module = await sched_kit.start(sleep_max=3600.0)  # fewer idle wakes: a faster simulation
    tasks = module.tasks
    with trio.fail_after(4 * DAY):
        task = await tasks.create(task_body("30 2 * * *", timezone="Europe/Berlin"), by=principal(Role.OPERATOR))
        await trio.sleep_until(3 * DAY)
        runs = await settled(tasks, task.id)
    await module.stop()
    assert sorted(run.scheduled_for for run in runs) == [  # type: ignore[type-var]
        datetime(2024, 10, 27, 0, 30, tzinfo=timezone.utc),  # 02:30 CEST, the first pass only
        datetime(2024, 10, 28, 1, 30, tzinfo=timezone.utc),  # 02:30 CET
        datetime(2024, 10, 29, 1, 30, tzinfo=timezone.utc),
    ]


async def test_a_job_in_the_missing_spring_hour_runs_at_the_next_valid_instant(
    sched_autojump: trio.abc.Clock, sched_kit: SchedKit
) -> None:
    # 2024-03-31: 02:00 CET becomes 03:00 CEST; 02:30 does not exist that day.
    sched_kit.now.start = datetime(2024, 3, 30, 12, 0, tzinfo=timezone.utc)  # type: ignore[attr-defined]
    module = await sched_kit.start(sleep_max=3600.0)  # fewer idle wakes: a faster simulation
    tasks = module.tasks
    with trio.fail_after(4 * DAY):
        task = await tasks.create(task_body("30 2 * * *", timezone="Europe/Berlin"), by=principal(Role.OPERATOR))
        assert [t.isoformat() for t in task.next_runs[:3]] == [
            "2024-03-31T03:00:00+02:00",
            "2024-04-01T02:30:00+02:00",
            "2024-04-02T02:30:00+02:00",
        ]
        await trio.sleep_until(2 * DAY)
        runs = await settled(tasks, task.id)
    await module.stop()
    assert sorted(run.scheduled_for for run in runs) == [  # type: ignore[type-var]
        datetime(2024, 3, 31, 1, 0, tzinfo=timezone.utc),  # 03:00 CEST, once
        datetime(2024, 4, 1, 0, 30, tzinfo=timezone.utc),
    ]


async def test_disabling_stops_the_runs_and_enabling_resumes_from_now(
    sched_autojump: trio.abc.Clock, sched_module: Module
) -> None:
    tasks = sched_module.tasks
    with trio.fail_after(DAY):
        task = await tasks.create(task_body("*/10 * * * *"), by=principal(Role.OPERATOR))
        await trio.sleep_until(3600)  # 00:10 .. 01:00 fire: 6 runs
        disabled = await tasks.update(task.id, {"enabled": False}, by=principal(Role.OPERATOR))
        assert disabled.next_run is None and disabled.next_runs == []
        assert task.id not in await tasks.next_fire_times()
        await trio.sleep_until(3 * 3600)
        assert len(await settled(tasks, task.id)) == 6
        enabled = await tasks.update(task.id, {"enabled": True}, by=principal(Role.OPERATOR))
        assert enabled.next_run == datetime(2024, 1, 1, 3, 10, tzinfo=timezone.utc)
        await trio.sleep_until(3 * 3600 + 1500)  # 03:10, 03:20 fire; nothing missed is run
        runs = await settled(tasks, task.id)
    assert len(runs) == 8
    assert sorted(run.scheduled_for for run in runs[:2]) == [  # type: ignore[type-var]
        datetime(2024, 1, 1, 3, 10, tzinfo=timezone.utc),
        datetime(2024, 1, 1, 3, 20, tzinfo=timezone.utc),
    ]


async def test_with_nothing_due_the_scheduler_wakes_once_a_minute_at_most(
    sched_autojump: trio.abc.Clock, sched_module: Module
) -> None:
    tasks = sched_module.tasks
    with trio.fail_after(DAY):
        await tasks.create(task_body("0 12 * * *"), by=principal(Role.OPERATOR))
        actor_wakes_before = _wakes(sched_module)
        await trio.sleep(6 * 3600)  # six hours, nothing due
        woke = _wakes(sched_module) - actor_wakes_before
    assert 300 <= woke <= 6 * 60 + 2  # once per sleep_max (60 s): a clock check, not polling


def _wakes(module: Module) -> int:
    """How often the running scheduler actor's clock loop woke up."""
    from actors.myntrix.scheduler import TaskScheduler

    child = module.module().supervisor._children["scheduler"]  # the running incarnation
    assert child.current is not None and isinstance(child.current.instance, TaskScheduler)
    return child.current.instance.wakes
