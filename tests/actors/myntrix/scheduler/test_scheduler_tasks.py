"""The Tasks face: checks at the door, next fire times, roles, run now, overlap, history."""

from __future__ import annotations

import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import trio
from sched_support import Module, SchedKit, TIMEOUT, all_runs, principal, settled, task_body, until_runs

from actors.myntrix.scheduler import RunStatus, RunTrigger, TaskBusyError, UnknownActionError
from vareon_runtime.auth import Role
from vareon_runtime.errors import InvalidRequestError, NotFoundError, PermissionDeniedError

UTC = timezone.utc


async def test_create_answers_the_next_five_fire_times_in_the_tasks_zone(sched_module: Module) -> None:
    task = await sched_module.tasks.create(task_body("30 2 * * *", timezone="Europe/Berlin"), by=principal(Role.OPERATOR))
    assert [t.isoformat() for t in task.next_runs] == [f"2024-01-0{d}T02:30:00+01:00" for d in range(1, 6)]
    assert task.next_run == task.next_runs[0] and task.timezone == "Europe/Berlin"
    wire = task.model_dump(mode="json", by_alias=True)
    assert wire["nextRun"] == "2024-01-01T02:30:00+01:00" and wire["misfirePolicy"] == "run_once"
    assert wire["overlap"] == "skip" and wire["misfireGrace"] == 300.0 and wire["lastRun"] is None
    schedule = await sched_module.tasks.next_fire_times()
    assert schedule[task.id] == datetime(2024, 1, 1, 1, 30, tzinfo=UTC)
    changed = await sched_module.tasks.update(task.id, {"schedule": "0 6 * * 1"}, by=principal(Role.OPERATOR))
    assert changed.next_run is not None and changed.next_run.isoformat() == "2024-01-01T06:00:00+01:00"  # a Monday


async def test_a_never_firing_schedule_is_refused_with_the_reason(sched_module: Module) -> None:
    with pytest.raises(InvalidRequestError, match=r"never fires \(February has no 30th\)"):
        await sched_module.tasks.create(task_body("0 0 30 2 *"), by=principal(Role.OPERATOR))
    task = await sched_module.tasks.create(task_body(), by=principal(Role.OPERATOR))
    with pytest.raises(InvalidRequestError, match="has 3 field"):
        await sched_module.tasks.update(task.id, {"schedule": "* * *"}, by=principal(Role.OPERATOR))
    assert (await sched_module.tasks.list()).total == 1


async def test_unknown_kind_bad_parameters_and_bad_zone_are_422(sched_module: Module) -> None:
    tasks = sched_module.tasks
    with pytest.raises(UnknownActionError, match="no task action has the kind 'mail'; known: record, script"):
        await tasks.create(task_body(kind="mail"), by=principal(Role.ADMIN))
    with pytest.raises(InvalidRequestError, match="invalid record parameters: parameters.sleep"):
        await tasks.create(task_body(parameters={"sleep": -1}), by=principal(Role.ADMIN))
    with pytest.raises(InvalidRequestError, match="not an IANA time zone"):
        await tasks.create(task_body(timezone="Nowhere/Town"), by=principal(Role.ADMIN))
    with pytest.raises(InvalidRequestError, match="invalid TaskCreate"):
        await tasks.create({"name": "x"}, by=principal(Role.ADMIN))


async def test_only_an_admin_defines_script_tasks(sched_module: Module, tmp_path: Path) -> None:
    tasks = sched_module.tasks
    body = task_body(kind="script", parameters={"argv": [sys.executable, "-c", "print(1)"]})
    with pytest.raises(PermissionDeniedError, match="only an admin may create a script task"):
        await tasks.create(body, by=principal(Role.OPERATOR))
    task = await tasks.create(body, by=principal(Role.ADMIN, "root"))
    assert task.created_by == "root"
    with pytest.raises(PermissionDeniedError, match="only an admin may change a script task"):
        await tasks.update(task.id, {"enabled": False}, by=principal(Role.OPERATOR))
    with pytest.raises(PermissionDeniedError, match="only an admin may delete"):
        await tasks.delete(task.id, by=principal(Role.OPERATOR))
    mine = await tasks.create(task_body(), by=principal(Role.OPERATOR))
    with pytest.raises(PermissionDeniedError, match="only an admin may change a script task"):
        await tasks.update(mine.id, {"action": "script", "parameters": body["parameters"]}, by=principal(Role.OPERATOR))
    await tasks.delete(task.id, by=principal(Role.ADMIN))


async def test_unknown_ids_are_404(sched_module: Module) -> None:
    tasks = sched_module.tasks
    for call in (
        tasks.get("nope"),
        tasks.get("00000000-0000-0000-0000-000000000000"),
        tasks.update("00000000-0000-0000-0000-000000000000", {"enabled": False}, by=principal(Role.ADMIN)),
        tasks.delete("00000000-0000-0000-0000-000000000000"),
        tasks.run_now("00000000-0000-0000-0000-000000000000"),
    ):
        with pytest.raises(NotFoundError):
            await call


async def test_run_now_answers_the_started_run_and_refuses_a_second_while_it_runs(
    sched_kit: SchedKit, sched_module: Module
) -> None:
    tasks = sched_module.tasks
    task = await tasks.create(task_body("0 0 1 1 *", parameters={"sleep": 0.5, "say": "hello"}, enabled=False), by=principal(Role.OPERATOR))
    with trio.fail_after(TIMEOUT):
        run = await tasks.run_now(task.id, by=principal(Role.OPERATOR, "ops"))
        assert run.status is RunStatus.RUNNING and run.trigger is RunTrigger.MANUAL and run.scheduled_for is None
        assert run.job_id is not None
        with pytest.raises(TaskBusyError, match="is still running") as caught:
            await tasks.run_now(task.id)
        assert caught.value.status == 409
        (done,) = await settled(tasks, task.id)
    assert done.id == run.id and done.status is RunStatus.SUCCESS and done.logs == "hello" and done.end_time
    shown = await tasks.get(task.id)
    assert shown.last_status is RunStatus.SUCCESS and shown.last_run == done.start_time


async def test_a_cron_fire_while_the_last_run_still_runs_is_skipped_saying_why(
    sched_autojump: trio.abc.Clock, sched_kit: SchedKit, sched_module: Module
) -> None:
    tasks = sched_module.tasks
    with trio.fail_after(86400):
        task = await tasks.create(task_body("*/1 * * * *", parameters={"sleep": 90}), by=principal(Role.OPERATOR))
        await trio.sleep_until(60 * 2 + 45)  # 00:01 starts (90 s), 00:02 finds it running
        await tasks.update(task.id, {"enabled": False}, by=principal(Role.OPERATOR))
        await trio.sleep(600)  # simulated: the first run ends meanwhile
        runs = await until_runs(tasks, task.id, 2)
    by_time = {run.scheduled_for: run for run in runs}
    assert by_time[datetime(2024, 1, 1, 0, 1, tzinfo=UTC)].status is RunStatus.SUCCESS
    skipped = by_time[datetime(2024, 1, 1, 0, 2, tzinfo=UTC)]
    assert skipped.status is RunStatus.SKIPPED
    assert skipped.error is not None and "was still running" in skipped.error and "overlap policy is skip" in skipped.error


async def test_a_failing_and_a_raising_action_end_as_failed_runs_and_the_scheduler_lives_on(
    sched_module: Module,
) -> None:
    tasks = sched_module.tasks
    fail = await tasks.create(task_body(parameters={"fail": True}), by=principal(Role.OPERATOR))
    boom = await tasks.create(task_body(parameters={"explode": True}), by=principal(Role.OPERATOR))
    with trio.fail_after(TIMEOUT):
        await tasks.run_now(fail.id)
        await tasks.run_now(boom.id)
        (failed,) = await settled(tasks, fail.id)
        (raised,) = await settled(tasks, boom.id)
        assert (await tasks.run_now(fail.id)).status is RunStatus.RUNNING  # still served
        await settled(tasks, fail.id)
    assert failed.status is RunStatus.FAILED and failed.exit_code == 3 and failed.error == "asked to fail"
    assert raised.status is RunStatus.FAILED
    assert raised.error == "the record action raised RuntimeError: the record action blew up"
    job = await sched_module.tasks.runs.recorder.jobs.get(raised.job_id or "")
    assert job.type == "task.run" and job.status.value == "failed" and job.details["taskId"] == boom.id  # type: ignore[index]


async def test_history_filters_by_task_status_and_time_and_pages_newest_first(
    sched_kit: SchedKit, sched_module: Module
) -> None:
    tasks = sched_module.tasks
    ok = await tasks.create(task_body(name="ok"), by=principal(Role.OPERATOR))
    bad = await tasks.create(task_body(name="bad", parameters={"fail": True}), by=principal(Role.OPERATOR))
    with trio.fail_after(TIMEOUT):
        for _ in range(3):
            await tasks.run_now(ok.id)
            await settled(tasks, ok.id)
            await tasks.run_now(bad.id)
            await settled(tasks, bad.id)
    everything = await all_runs(tasks)
    assert len(everything) == 6
    assert [r.start_time for r in everything] == sorted((r.start_time for r in everything), reverse=True)
    page = await tasks.history(limit=4, offset=0)
    rest = await tasks.history(limit=4, offset=4)
    assert page.total == rest.total == 6 and len(page.items) == 4 and len(rest.items) == 2
    assert [r.id for r in page.items + rest.items] == [r.id for r in everything]
    assert {r.task_id for r in (await tasks.history(task_id=bad.id)).items} == {bad.id}
    failed = await tasks.history(status="failed")
    assert failed.total == 3 and {r.status for r in failed.items} == {RunStatus.FAILED}
    middle = sorted(r.start_time for r in everything)[2]
    since = await tasks.history(since=middle)
    until = await tasks.history(until=middle)
    assert since.total + until.total == 6 and min(r.start_time for r in since.items) >= middle
    assert (await tasks.history(since=middle + timedelta(days=1))).total == 0
    with pytest.raises(InvalidRequestError, match="status must be one of"):
        await tasks.history(status="done")
    with pytest.raises(InvalidRequestError, match="limit must be between 1 and 500"):
        await tasks.history(limit=0)
    with pytest.raises(InvalidRequestError, match="must not be after until"):
        await tasks.history(since=middle, until=middle - timedelta(seconds=1))


async def test_runs_beyond_the_keep_limit_are_pruned(sched_kit: SchedKit) -> None:
    module = await sched_kit.start(runs_keep=2)
    tasks = module.tasks
    task = await tasks.create(task_body(), by=principal(Role.OPERATOR))
    with trio.fail_after(TIMEOUT):
        ids = []
        for _ in range(4):
            ids.append((await tasks.run_now(task.id)).id)
            await settled(tasks, task.id)
    await module.stop()
    assert [r.id for r in await all_runs(tasks, task.id)] == ids[:-3:-1]


async def test_delete_cancels_the_running_run_then_removes_task_and_history(sched_module: Module) -> None:
    tasks = sched_module.tasks
    task = await tasks.create(task_body(parameters={"sleep": 3600}), by=principal(Role.OPERATOR))
    events = tasks.runs.bus.subscribe(f"task.{task.id}.run")
    with trio.fail_after(TIMEOUT):
        run = await tasks.run_now(task.id)
        await tasks.delete(task.id, by=principal(Role.OPERATOR))
        seen = []
        while not seen or seen[-1]["event"] != "finished":
            seen.append((await events.receive()).data)  # type: ignore[union-attr]
    assert seen[-1]["status"] == "cancelled" and seen[-1]["error"] == "the task was deleted (cancelled by tester)"
    assert seen[0]["event"] == "started" and seen[0]["runId"] == run.id
    with pytest.raises(NotFoundError):
        await tasks.get(task.id)
    assert (await tasks.history(task_id=task.id)).total == 0
    job = await tasks.runs.recorder.jobs.get(run.job_id or "")
    assert job.status.value == "cancelled"  # the job stays, finished, saying who
    assert job.details is not None and job.details["cancelledBy"] == "tester"
    assert task.id not in await tasks.next_fire_times()
