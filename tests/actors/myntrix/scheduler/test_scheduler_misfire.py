"""Misfires: fire times missed while the runtime was down, or passed over by a wall-clock jump."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import trio
from sched_support import SchedKit, TIMEOUT, principal, settled, task_body, until_runs

from actors.myntrix.scheduler import RunStatus, RunTrigger
from vareon_runtime.auth import Role

UTC = timezone.utc


async def _downtime(kit: SchedKit, policy: str, grace: float, down: timedelta) -> list:  # type: ignore[type-arg]
    """Create an hourly task at 00:00:30, stop the runtime, start it again ``down`` later."""
    module = await kit.start()
    task = await module.tasks.create(
        task_body("0 * * * *", misfirePolicy=policy, misfireGrace=grace), by=principal(Role.OPERATOR)
    )
    await module.stop()
    kit.now.offset = down  # type: ignore[attr-defined]
    module = await kit.start()
    runs = await until_runs(module.tasks, task.id, 1)
    await module.stop()
    return runs


@pytest.mark.parametrize("policy", ["run_once", "skip"])
async def test_after_downtime_run_once_runs_the_latest_missed_time_within_grace(sched_kit: SchedKit, policy: str) -> None:
    with trio.fail_after(TIMEOUT):
        # Down from 00:00:30 to 05:03:30: 01:00 .. 05:00 were missed; 05:00 is 210 s ago.
        runs = await _downtime(sched_kit, policy, 600.0, timedelta(hours=5, minutes=3))
    (run,) = runs
    assert run.scheduled_for == datetime(2024, 1, 1, 5, 0, tzinfo=UTC) and run.trigger is RunTrigger.CRON
    if policy == "run_once":
        assert run.status is RunStatus.SUCCESS
        assert "misfire: the fire times from 2024-01-01T01:00:00Z to 2024-01-01T05:00:00Z passed" in (run.logs or "")
        assert len(sched_kit.record.calls) == 1
    else:
        assert run.status is RunStatus.SKIPPED
        assert run.error is not None and "not run: the task's misfire policy is skip" in run.error
        assert sched_kit.record.calls == []


async def test_after_downtime_beyond_the_grace_nothing_runs_and_a_skipped_run_says_why(sched_kit: SchedKit) -> None:
    with trio.fail_after(TIMEOUT):
        runs = await _downtime(sched_kit, "run_once", 600.0, timedelta(hours=5, minutes=20))  # 05:00 is 1230 s ago
    (run,) = runs
    assert run.status is RunStatus.SKIPPED and sched_kit.record.calls == []
    assert run.error is not None and "1230s late is beyond the misfire grace of 600s" in run.error


async def test_the_schedule_resumes_after_the_restart_from_the_saved_last_fire_time(
    sched_autojump: trio.abc.Clock, sched_kit: SchedKit
) -> None:
    with trio.fail_after(2 * 86400):
        module = await sched_kit.start()
        task = await module.tasks.create(task_body("*/30 * * * *"), by=principal(Role.OPERATOR))
        await trio.sleep_until(3600)  # 00:30 and 01:00 fire
        await settled(module.tasks, task.id)
        await module.stop()
        module = await sched_kit.start()  # no downtime: nothing is missed, nothing runs twice
        await trio.sleep_until(3600 + 1800)  # 01:30 fires
        runs = await settled(module.tasks, task.id)
        assert (await module.tasks.get(task.id)).last_fire_at == datetime(2024, 1, 1, 1, 30, tzinfo=UTC)
        await module.stop()
    assert sorted(run.scheduled_for for run in runs) == [  # type: ignore[type-var]
        datetime(2024, 1, 1, 0, 30, tzinfo=UTC),
        datetime(2024, 1, 1, 1, 0, tzinfo=UTC),
        datetime(2024, 1, 1, 1, 30, tzinfo=UTC),
    ]


async def test_a_forward_jump_of_the_wall_clock_makes_misfires_not_a_burst_of_runs(
    sched_autojump: trio.abc.Clock, sched_kit: SchedKit
) -> None:
    with trio.fail_after(2 * 86400):
        module = await sched_kit.start()
        tasks = module.tasks
        skip = await tasks.create(task_body("*/5 * * * *", name="skip", misfirePolicy="skip"), by=principal(Role.OPERATOR))
        once = await tasks.create(task_body("*/5 * * * *", name="once", misfireGrace=600), by=principal(Role.OPERATOR))
        await trio.sleep_until(600)  # 00:05 and 00:10 fire normally
        sched_kit.now.offset = timedelta(hours=2)  # type: ignore[attr-defined]  # NTP sets the clock 2 h ahead
        await trio.sleep_until(600 + 61)  # the scheduler notices within sleep_max
        skipped = await settled(tasks, skip.id)
        ran = await settled(tasks, once.id)
        await module.stop()
    assert [r.status for r in sorted(skipped, key=lambda r: r.start_time)] == [
        RunStatus.SUCCESS, RunStatus.SUCCESS, RunStatus.SKIPPED
    ]
    assert [r.status for r in sorted(ran, key=lambda r: r.start_time)] == [
        RunStatus.SUCCESS, RunStatus.SUCCESS, RunStatus.SUCCESS
    ]
    assert "misfire" in (sorted(ran, key=lambda r: r.start_time)[-1].logs or "")
