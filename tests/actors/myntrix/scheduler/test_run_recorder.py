"""The kit's run recorder on the scheduler's runs: rows and jobs written in batches on a real
SQLite store, a run that ends before its start is written inserted as it ended, deleted tasks,
pruning, a database that refuses (a real trigger), a stop that writes what was noted, and the
jobs published once written."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
import trio
from sched_support import EPOCH, Module, TIMEOUT, principal, task_body
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from actors.kit import JobRecord, Jobs, Recorder, RunNote
from actors.kit.recorder import WRITE_ATTEMPTS
from actors.myntrix.scheduler.models import TASK_RUNS, TaskRunRecord
from vareon_runtime.auth import Role
from vareon_runtime.bus import EventBus
from vareon_runtime.errors import NotFoundError, StoreClosedError, StoreError
from vareon_runtime.store import Store

NEVER_SOON = "0 0 1 1 *"  # once a year: the module's own scheduler stays out of the way


def run_row(task_id: str, n: int = 0) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "task_id": task_id,
        "scheduled_for": EPOCH + timedelta(minutes=n),
        "start_time": EPOCH + timedelta(minutes=n, seconds=1),
        "status": "running",
        "trigger": "cron",
        "logs": f"run {n}\n",
    }


def job_row(run: dict[str, Any]) -> dict[str, Any]:
    now = run["start_time"]
    return {
        "id": str(uuid.uuid4()), "name": "task job", "type": "task.run", "status": "running", "progress": 0,
        "created_at": now, "updated_at": now, "logs": "started", "details": {"runId": run["id"]},
    }  # fmt: skip


def ended(n: int = 0) -> dict[str, Any]:
    return {
        "end_time": EPOCH + timedelta(minutes=n, seconds=2), "status": "succeeded", "exit_code": 0,
        "http_status": None, "error": None, "logs": f"run {n}\nall good\n",
    }  # fmt: skip


async def make_tasks(module: Module, count: int) -> list[str]:
    ids = []
    for i in range(count):
        task = await module.tasks.create(task_body(NEVER_SOON, name=f"t{i}"), by=principal(Role.OPERATOR))
        ids.append(task.id)
    return ids


async def rows_of(store: Store, task_id: str) -> list[dict[str, Any]]:
    def read(session: Session) -> list[dict[str, Any]]:
        runs = session.scalars(select(TaskRunRecord).where(TaskRunRecord.task_id == task_id)).all()
        found = []
        for run in runs:
            job = session.get(JobRecord, run.job_id) if run.job_id else None
            found.append({
                "id": run.id, "status": run.status, "logs": run.logs, "end_time": run.end_time,
                "start_time": run.start_time, "job": None if job is None else (job.status, job.progress, job.logs),
            })  # fmt: skip
        return sorted(found, key=lambda r: r["start_time"])

    return await store.read(read)


async def started_recorder(nursery: trio.Nursery, store: Store, bus: EventBus | None = None, **options: Any) -> Recorder:
    recorder = Recorder(store, Jobs(store, bus or EventBus()), TASK_RUNS, **{"keep": 100, **options})
    await nursery.start(recorder.run)
    return recorder


def note_run(recorder: Recorder, task_id: str, n: int = 0) -> RunNote:
    row = run_row(task_id, n)
    job = job_row(row)
    return recorder.started({**row, "job_id": job["id"]}, job)


async def test_a_thousand_runs_noted_together_are_one_write(
    sched_module: Module, sched_store: Store, nursery: trio.Nursery
) -> None:
    (task,) = await make_tasks(sched_module, 1)
    recorder = await started_recorder(nursery, sched_store, keep=5000)
    notes = [note_run(recorder, task, n) for n in range(1000)]
    with trio.fail_after(TIMEOUT):
        for note in notes:
            await note.inserted.wait()
    assert recorder.stats["writes"] == 1
    assert all(note.error is None for note in notes)
    rows = await rows_of(sched_store, task)
    assert len(rows) == 1000
    assert {row["status"] for row in rows} == {"running"}
    assert {row["job"] for row in rows} == {("running", 0, "started")}


async def test_a_run_that_ends_before_its_start_is_written_is_inserted_as_it_ended(
    sched_module: Module, sched_store: Store, nursery: trio.Nursery
) -> None:
    (task,) = await make_tasks(sched_module, 1)
    recorder = await started_recorder(nursery, sched_store)
    note = note_run(recorder, task)
    recorder.finished(note, ended(), job_log="run success", job_details={"status": "success"})
    with trio.fail_after(TIMEOUT):
        await note.written.wait()
    assert recorder.stats["writes"] == 1, "one insert of the final row, no update"
    (row,) = await rows_of(sched_store, task)
    assert row["status"] == "succeeded" and row["logs"] == "run 0\nall good\n"
    assert row["job"] == ("succeeded", 100, "started\nrun success")


async def test_the_end_of_a_run_already_written_is_an_update(
    sched_module: Module, sched_store: Store, nursery: trio.Nursery
) -> None:
    (task,) = await make_tasks(sched_module, 1)
    recorder = await started_recorder(nursery, sched_store)
    note = note_run(recorder, task)
    with trio.fail_after(TIMEOUT):
        await note.inserted.wait()
        assert (await rows_of(sched_store, task))[0]["status"] == "running"
        recorder.finished(note, {**ended(), "status": "failed", "exit_code": 3, "error": "exit 3"},
                          job_log="run failed: exit 3", job_details={"status": "failed"})  # fmt: skip
        await note.written.wait()
    (row,) = await rows_of(sched_store, task)
    assert row["status"] == "failed"
    assert row["job"] == ("failed", 0, "started\nrun failed: exit 3")


async def test_runs_of_a_deleted_task_are_dropped_and_the_others_written(
    sched_module: Module, sched_store: Store, nursery: trio.Nursery
) -> None:
    (task,) = await make_tasks(sched_module, 1)
    recorder = await started_recorder(nursery, sched_store)
    gone, kept = note_run(recorder, str(uuid.uuid4())), note_run(recorder, task)
    with trio.fail_after(TIMEOUT):
        await gone.written.wait()
        await kept.written.wait()
    assert isinstance(gone.error, NotFoundError) and "was deleted before its run was recorded" in str(gone.error)
    assert kept.error is None
    assert len(await rows_of(sched_store, task)) == 1
    # An end noted for the dropped run changes nothing and does not wait.
    recorder.finished(gone, ended(), job_log="late", job_details={})
    assert gone.written.is_set()


async def test_a_task_keeps_its_newest_runs_across_batches(
    sched_module: Module, sched_store: Store, nursery: trio.Nursery
) -> None:
    first, second = await make_tasks(sched_module, 2)
    recorder = await started_recorder(nursery, sched_store, keep=3)
    with trio.fail_after(TIMEOUT):
        for batch in (range(0, 5), range(5, 6), range(6, 10)):
            notes = [note_run(recorder, first, n) for n in batch] + [note_run(recorder, second, n) for n in batch]
            for note in notes:
                await note.written.wait()
    for task in (first, second):
        rows = await rows_of(sched_store, task)
        assert [row["logs"] for row in rows] == ["run 7\n", "run 8\n", "run 9\n"]


async def test_a_refused_write_is_retried_then_given_up_waking_its_waiters(
    sched_module: Module, sched_store: Store, nursery: trio.Nursery
) -> None:
    (task,) = await make_tasks(sched_module, 1)

    def refuse(session: Session) -> None:
        session.execute(text(
            "CREATE TRIGGER refuse_runs BEFORE INSERT ON task_runs BEGIN SELECT RAISE(ABORT, 'disk says no'); END"
        ))  # fmt: skip

    def allow(session: Session) -> None:
        session.execute(text("DROP TRIGGER refuse_runs"))

    await sched_store.write(refuse)
    recorder = await started_recorder(nursery, sched_store, flush_interval=0.01)
    with trio.fail_after(TIMEOUT):
        # Refused once, then the database takes it: the retry writes it.
        note = note_run(recorder, task, 0)
        while note.attempts == 0:
            await trio.sleep(0.01)
        await sched_store.write(allow)
        await note.written.wait()
        assert note.error is None
        assert len(await rows_of(sched_store, task)) == 1
        # Refused every time: given up after WRITE_ATTEMPTS, with the database's reason.
        await sched_store.write(refuse)
        note = note_run(recorder, task, 1)
        await note.inserted.wait()
    assert isinstance(note.error, StoreError) and "disk says no" in str(note.error)
    assert note.attempts == WRITE_ATTEMPTS and recorder.stats["given_up"] == 1
    assert len(await rows_of(sched_store, task)) == 1


async def test_a_stop_writes_everything_noted(sched_module: Module, sched_store: Store) -> None:
    (task,) = await make_tasks(sched_module, 1)
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            recorder = await started_recorder(nursery, sched_store, flush_interval=60.0)
            notes = [note_run(recorder, task, n) for n in range(20)]
            recorder.finished(notes[0], ended(), job_log="done", job_details={})
            nursery.cancel_scope.cancel()
    assert all(note.written.is_set() and note.error is None for note in notes)
    rows = await rows_of(sched_store, task)
    assert len(rows) == 20 and rows[0]["status"] == "succeeded"


async def test_notes_left_when_the_store_is_gone_are_given_up_saying_so(sched_kit: Any, tmp_path: Any) -> None:
    store = Store(f"sqlite:///{tmp_path / 'other.db'}")
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            await nursery.start(store.run)
            recorder = await started_recorder(nursery, store, flush_interval=60.0)
            note = note_run(recorder, str(uuid.uuid4()))
            await store.close()
            nursery.cancel_scope.cancel()
    assert note.inserted.is_set() and isinstance(note.error, StoreClosedError)


@pytest.mark.parametrize("keep", [0, -1])
def test_keep_must_be_positive(keep: int) -> None:
    with pytest.raises(ValueError, match=f"keep must be at least 1, not {keep}"):
        Recorder(Store("sqlite:///:memory:"), Jobs(Store("sqlite:///:memory:"), EventBus()), TASK_RUNS, keep=keep)


async def test_every_job_is_published_once_written(sched_module: Module, sched_store: Store, nursery: trio.Nursery) -> None:
    (task,) = await make_tasks(sched_module, 1)
    bus = EventBus()
    recorder = await started_recorder(nursery, sched_store, bus)
    with bus.subscribe("job.*") as events:
        note = note_run(recorder, task)
        with trio.fail_after(TIMEOUT):
            await note.inserted.wait()
            (started,) = [events.receive_nowait()]
            recorder.finished(note, ended(), job_log="run success", job_details={"status": "success"})
            await note.written.wait()
            (finished,) = [events.receive_nowait()]
    assert note.job is not None and started.topic == finished.topic == f"job.{note.job['id']}"
    assert (started.data["status"], finished.data["status"]) == ("running", "completed")
    assert finished.data["details"]["status"] == "success"


async def test_recovery_fails_the_runs_a_crash_left_and_their_jobs(
    sched_module: Module, sched_store: Store, nursery: trio.Nursery
) -> None:
    (task,) = await make_tasks(sched_module, 1)
    recorder = await started_recorder(nursery, sched_store)
    left, done = note_run(recorder, task, 0), note_run(recorder, task, 1)
    recorder.changed(left, {"pid": 4242, "process_create_time": 12.5})
    recorder.finished(done, ended(1))
    with trio.fail_after(TIMEOUT):
        await left.written.wait()
        await done.written.wait()
        interrupted = await recorder.recover("the runtime stopped", now=EPOCH + timedelta(hours=1))
    assert [(run.run_id, run.owner_id, run.pid, run.create_time) for run in interrupted] == [
        (left.row["id"], task, 4242, 12.5)
    ]
    rows = await rows_of(sched_store, task)
    assert [(row["status"], row["job"][0]) for row in rows] == [("failed", "failed"), ("succeeded", "succeeded")]
    assert rows[0]["end_time"] == EPOCH + timedelta(hours=1) and rows[0]["job"][2].endswith("the runtime stopped")
