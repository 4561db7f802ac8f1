"""Jobs: created, progressing, finished once (succeeded, failed or cancelled); listed newest
first; every change published once written; a ticket written by someone else's transaction;
recovered after a crash."""

from __future__ import annotations

import pytest
import trio

from actors.kit import JOB_LOG_MAX, Jobs, JobStatus, RunState, job_topic
from vareon_runtime.bus import EventBus
from vareon_runtime.errors import ConflictError, InvalidRequestError, NotFoundError
from vareon_runtime.store import Store


async def test_a_job_progresses_and_finishes_once(store: Store) -> None:
    jobs = Jobs(store, EventBus())
    job = await jobs.create("import data", "pipeline.run", details={"rows": 10})
    assert (job.status, job.progress, job.logs, job.details) == (JobStatus.PENDING, 0, None, {"rows": 10})
    job = await jobs.update(job.id, state=RunState.RUNNING, progress=40, log="read 4 rows")
    job = await jobs.update(job.id, progress=80, log="read 8 rows")
    assert (job.status, job.progress, job.logs) == (JobStatus.RUNNING, 80, "read 4 rows\nread 8 rows")
    done = await jobs.finish(job.id, RunState.SUCCEEDED, log="done", details={"written": 10})
    assert (done.status, done.progress) == (JobStatus.COMPLETED, 100)
    assert done.details == {"rows": 10, "written": 10} and done.logs is not None and done.logs.endswith("done")
    assert done.updated_at >= done.created_at
    with pytest.raises(ConflictError, match="already completed"):
        await jobs.update(job.id, progress=90)
    with pytest.raises(ConflictError, match="already completed"):
        await jobs.finish(job.id, RunState.FAILED)
    assert await jobs.get(job.id) == done


async def test_every_change_is_published_once_written(store: Store) -> None:
    bus = EventBus()
    jobs = Jobs(store, bus)
    with bus.subscribe("job.*") as events:
        job = await jobs.create("upload part.gcode", "device.upload")
        await jobs.update(job.id, state=RunState.RUNNING, progress=50)
        await jobs.finish(job.id, RunState.SUCCEEDED, log="sent")
        with pytest.raises(ConflictError):
            await jobs.update(job.id, progress=60)  # refused: nothing is published
        seen = [events.receive_nowait() for _ in range(3)]
        with pytest.raises(trio.WouldBlock):
            events.receive_nowait()
    assert {event.topic for event in seen} == {job_topic(job.id)}
    assert [(e.data["status"], e.data["progress"]) for e in seen] == [("pending", 0), ("running", 50), ("completed", 100)]
    assert seen[-1].data == (await jobs.get(job.id)).model_dump(mode="json", by_alias=True)


async def test_refusals_say_what_was_expected(store: Store) -> None:
    jobs = Jobs(store, EventBus())
    job = await jobs.create("x", "test")
    with pytest.raises(InvalidRequestError, match="progress must be between 0 and 100, not 101"):
        await jobs.update(job.id, progress=101)
    with pytest.raises(InvalidRequestError, match="end it with finish"):
        await jobs.update(job.id, state=RunState.FAILED)
    with pytest.raises(InvalidRequestError, match="starts pending or running"):
        await jobs.create("y", "test", state=RunState.SUCCEEDED)
    with pytest.raises(InvalidRequestError, match="a job ends succeeded, failed or cancelled, not 'skipped'"):
        await jobs.finish(job.id, RunState.SKIPPED)
    with pytest.raises(NotFoundError, match="no job has the id 'nope'"):
        await jobs.update("nope", progress=1)
    with pytest.raises(NotFoundError):
        await jobs.get("nope")
    with pytest.raises(InvalidRequestError, match="status must be one of"):
        await jobs.list(status="done")
    failed = await jobs.finish(job.id, RunState.FAILED, log="boom")
    assert (failed.status, failed.progress, failed.logs) == (JobStatus.FAILED, 0, "boom")


async def test_logs_keep_the_newest_characters(store: Store) -> None:
    jobs = Jobs(store, EventBus())
    job = await jobs.create("chatty", "test", state=RunState.RUNNING)
    for i in range(3):
        job = await jobs.update(job.id, log=f"{i}" * (JOB_LOG_MAX // 2))
    assert job.logs is not None and len(job.logs) == JOB_LOG_MAX and job.logs.endswith("2")


async def test_list_is_newest_first_filtered_and_counted(store: Store) -> None:
    jobs = Jobs(store, EventBus())
    made = []
    for i in range(5):
        made.append(await jobs.create(f"job {i}", "a" if i % 2 else "b"))
        await trio.sleep(0.002)  # distinct creation times
    await jobs.finish(made[0].id, RunState.SUCCEEDED)
    page = await jobs.list(limit=2)
    assert [j.name for j in page.items] == ["job 4", "job 3"] and page.total == 5
    page = await jobs.list(limit=2, offset=4)
    assert [j.name for j in page.items] == ["job 0"]
    page = await jobs.list(type="a")
    assert [j.name for j in page.items] == ["job 3", "job 1"] and page.total == 2
    page = await jobs.list(status="pending", type="b")
    assert [j.name for j in page.items] == ["job 4", "job 2"] and page.total == 2
    assert (await jobs.list(status="completed")).total == 1


async def test_a_cancelled_job_and_a_timed_out_one(store: Store) -> None:
    jobs = Jobs(store, EventBus())
    upload = await jobs.create("upload", "device.upload", state=RunState.RUNNING)
    cancelled = await jobs.finish(upload.id, RunState.CANCELLED, log="cancelled by alice")
    assert (cancelled.status, cancelled.progress, cancelled.logs) == (JobStatus.CANCELLED, 0, "cancelled by alice")
    run = await jobs.create("run", "task.run", state=RunState.RUNNING)
    timed_out = await jobs.finish(run.id, RunState.TIMEOUT)
    assert timed_out.status is JobStatus.FAILED  # jobs have no timeout: a run out of time failed
    assert (await jobs.list(status="cancelled")).items == [cancelled]
    assert (await jobs.list(status=JobStatus.FAILED)).items == [timed_out]


async def test_a_ticket_is_written_by_another_transaction_and_published_after_it(store: Store) -> None:
    bus = EventBus()
    jobs = Jobs(store, bus)
    ticket = jobs.ticket("start agent a", "agent.start", details={"agentId": "a"})
    with bus.subscribe("job.*") as events:
        ticket.start()
        await store.write(ticket.apply)  # the transaction of the change it reports
        assert not events.queued  # written, but not announced before the writer says it committed
        jobs.published(ticket)
        ticket.finish(RunState.SUCCEEDED, log="agent running", details={"pid": 4})
        await store.write(ticket.apply)
        jobs.published(ticket)
        seen = [events.receive_nowait().data for _ in range(2)]
    assert [(e["status"], e["progress"]) for e in seen] == [("running", 0), ("completed", 100)]
    done = await jobs.get(ticket.id)
    assert done.details == {"agentId": "a", "pid": 4} and done.logs == "agent running"
    assert await store.write(ticket.apply) is False  # nothing left to write


async def test_settling_a_ticket_nobody_wrote(store: Store) -> None:
    jobs = Jobs(store, EventBus())
    ticket = jobs.ticket("stop agent a", "agent.stop")
    failed = await jobs.settle(ticket, RunState.FAILED, log="ConflictError: agent 'a' is already stopped")
    assert (failed.status, failed.logs) == (JobStatus.FAILED, "ConflictError: agent 'a' is already stopped")
    assert await jobs.get(ticket.id) == failed


async def test_recovery_fails_the_jobs_a_crash_left_unfinished(store: Store) -> None:
    bus = EventBus()
    jobs = Jobs(store, bus)
    start = await jobs.create("start agent a", "agent.start", state=RunState.RUNNING)
    upload = await jobs.create("upload", "device.upload")
    done = await jobs.create("stop agent b", "agent.stop", state=RunState.RUNNING)
    done = await jobs.finish(done.id, RunState.SUCCEEDED)
    with bus.subscribe("job.*") as events:
        assert await jobs.recover(["agent."], "the runtime stopped") == 1
        (event,) = [events.receive_nowait()]
    recovered = await jobs.get(start.id)
    assert (recovered.status, recovered.logs) == (JobStatus.FAILED, "the runtime stopped")
    assert event.data == recovered.model_dump(mode="json", by_alias=True)
    assert (await jobs.get(upload.id)).status is JobStatus.PENDING  # another domain's to recover
    assert await jobs.get(done.id) == done
