"""Jobs: created, progressing, finished once; listed newest first; agents report into them."""

from __future__ import annotations

import pytest
import trio
from myntrix_support import TIMEOUT, Kit

from actors.myntrix import Agents, Jobs, JobStatus
from actors.myntrix.jobs import JOB_LOG_MAX, job_topic
from vareon_runtime.bus import EventBus
from vareon_runtime.errors import ConflictError, InvalidRequestError, NotFoundError
from vareon_runtime.store import Store

SLEEPER = "import time\nwhile True:\n    time.sleep(1)\n"


async def test_a_job_progresses_and_finishes_once(store: Store) -> None:
    jobs = Jobs(store)
    job = await jobs.create("import data", "pipeline.run", details={"rows": 10})
    assert (job.status, job.progress, job.logs, job.details) == (JobStatus.PENDING, 0, None, {"rows": 10})
    job = await jobs.update(job.id, status=JobStatus.RUNNING, progress=40, log="read 4 rows")
    job = await jobs.update(job.id, progress=80, log="read 8 rows")
    assert (job.status, job.progress, job.logs) == (JobStatus.RUNNING, 80, "read 4 rows\nread 8 rows")
    done = await jobs.finish(job.id, ok=True, log="done", details={"written": 10})
    assert (done.status, done.progress) == (JobStatus.COMPLETED, 100)
    assert done.details == {"rows": 10, "written": 10} and done.logs is not None and done.logs.endswith("done")
    assert done.updated_at >= done.created_at
    with pytest.raises(ConflictError, match="already completed"):
        await jobs.update(job.id, progress=90)
    with pytest.raises(ConflictError, match="already completed"):
        await jobs.finish(job.id, ok=False)
    assert await jobs.get(job.id) == done


async def test_every_change_is_published_once_written(store: Store) -> None:
    bus = EventBus()
    jobs = Jobs(store, bus)
    with bus.subscribe("job.*") as events:
        job = await jobs.create("upload part.gcode", "device.upload")
        await jobs.update(job.id, status=JobStatus.RUNNING, progress=50)
        await jobs.finish(job.id, ok=True, log="sent")
        with pytest.raises(ConflictError):
            await jobs.update(job.id, progress=60)  # refused: nothing is published
        seen = [events.receive_nowait() for _ in range(3)]
        with pytest.raises(trio.WouldBlock):
            events.receive_nowait()
    assert {event.topic for event in seen} == {job_topic(job.id)}
    assert [(e.data["status"], e.data["progress"]) for e in seen] == [("pending", 0), ("running", 50), ("completed", 100)]
    assert seen[-1].data == (await jobs.get(job.id)).model_dump(mode="json", by_alias=True)


async def test_refusals_say_what_was_expected(store: Store) -> None:
    jobs = Jobs(store)
    job = await jobs.create("x", "test")
    with pytest.raises(InvalidRequestError, match="progress must be between 0 and 100, not 101"):
        await jobs.update(job.id, progress=101)
    with pytest.raises(InvalidRequestError, match="finish a job with finish"):
        await jobs.update(job.id, status=JobStatus.FAILED)
    with pytest.raises(InvalidRequestError, match="starts pending or running"):
        await jobs.create("y", "test", status=JobStatus.COMPLETED)
    with pytest.raises(NotFoundError, match="no job has the id 'nope'"):
        await jobs.update("nope", progress=1)
    with pytest.raises(NotFoundError):
        await jobs.get("nope")
    with pytest.raises(InvalidRequestError, match="status must be one of"):
        await jobs.list(status="done")
    failed = await jobs.finish(job.id, ok=False, log="boom")
    assert (failed.status, failed.progress, failed.logs) == (JobStatus.FAILED, 0, "boom")


async def test_logs_keep_the_newest_characters(store: Store) -> None:
    jobs = Jobs(store)
    job = await jobs.create("chatty", "test", status=JobStatus.RUNNING)
    for i in range(3):
        job = await jobs.update(job.id, log=f"{i}" * (JOB_LOG_MAX // 2))
    assert job.logs is not None and len(job.logs) == JOB_LOG_MAX and job.logs.endswith("2")


async def test_list_is_newest_first_filtered_and_counted(store: Store) -> None:
    jobs = Jobs(store)
    made = []
    for i in range(5):
        made.append(await jobs.create(f"job {i}", "a" if i % 2 else "b"))
        await trio.sleep(0.002)  # distinct creation times
    await jobs.finish(made[0].id, ok=True)
    page = await jobs.list(limit=2)
    assert [j.name for j in page.items] == ["job 4", "job 3"] and page.total == 5
    page = await jobs.list(limit=2, offset=4)
    assert [j.name for j in page.items] == ["job 0"]
    page = await jobs.list(type="a")
    assert [j.name for j in page.items] == ["job 3", "job 1"] and page.total == 2
    page = await jobs.list(status="pending", type="b")
    assert [j.name for j in page.items] == ["job 4", "job 2"] and page.total == 2
    assert (await jobs.list(status="completed")).total == 1


async def test_agent_start_stop_and_refusals_are_jobs(kit: Kit, agents: Agents) -> None:
    agent = await kit.create(agents, SLEEPER, name="sleeper")
    with trio.fail_after(TIMEOUT):
        running = await agents.start(agent.id)
        with pytest.raises(ConflictError):
            await agents.start(agent.id)
        await agents.stop(agent.id)
    page = await agents.jobs.list(type="agent.start")
    assert page.total == 2
    refused, started = page.items
    assert started.status is JobStatus.COMPLETED and started.progress == 100
    assert started.name == "start agent sleeper"
    assert started.details == {"agentId": agent.id, "action": "start", "status": "running", "pid": running.pid}
    assert started.logs == f"agent running, pid {running.pid}"
    assert refused.status is JobStatus.FAILED and refused.logs is not None
    assert refused.logs.startswith("ConflictError: ") and "running" in refused.logs
    (stopped,) = (await agents.jobs.list(type="agent.stop")).items
    assert stopped.status is JobStatus.COMPLETED and stopped.details is not None
    assert stopped.details["status"] == "stopped" and stopped.details["pid"] is None
