"""After a kill -9: a script run notes its process group on its row, and the next boot marks the
runs left ``running`` as failed, fails their jobs and stops the process groups they left (by pid
and creation time: a pid since reused by another process is left alone)."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path
from typing import Any

import psutil
import trio
from sched_support import SchedKit, TIMEOUT, principal, settled, task_body
from sqlalchemy.orm import Session

from actors.kit import Jobs, JobStatus, RunState
from actors.myntrix.scheduler.component import INTERRUPTED
from actors.myntrix.scheduler.models import TaskRunRecord
from drivers.process import OSProcess
from vareon_runtime.auth import Role
from vareon_runtime.clock import utcnow

NEVER_SOON = "0 0 1 1 *"


def sleeper(tmp_path: Path, journal: Path) -> list[str]:
    """A script that notes its start, and its exit on SIGTERM, in ``journal``."""
    script = tmp_path / "sleeper.py"
    script.write_text(
        "import os, signal, sys, time\n"
        f"journal = {str(journal)!r}\n"
        "def note(what):\n"
        "    with open(journal, 'a') as f:\n"
        "        f.write(f'{what} {os.getpid()}\\n')\n"
        "def term(signum, frame):\n"
        "    note('exit')\n"
        "    sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, term)\n"
        "note('start')\n"
        "while True:\n"
        "    time.sleep(1)\n"
    )
    return [sys.executable, str(script)]


def run_row(run_id: str):  # type: ignore[no-untyped-def]
    def read(session: Session) -> dict[str, Any]:
        row = session.get(TaskRunRecord, run_id)
        assert row is not None
        return {"status": row.status, "error": row.error, "pid": row.pid, "create_time": row.process_create_time, "job_id": row.job_id}

    return read


def crashed_run(task_id: str, job_id: str, pid: int, create_time: float):  # type: ignore[no-untyped-def]
    """A run row as a kill -9 leaves it: still running, its script's group noted."""

    def write(session: Session) -> str:
        run_id = str(uuid.uuid4())
        session.add(
            TaskRunRecord(
                id=run_id, task_id=task_id, start_time=utcnow(), status="running", trigger="manual",
                job_id=job_id, pid=pid, process_create_time=create_time,
            )
        )  # fmt: skip
        return run_id

    return write


async def test_a_script_run_notes_its_process_group_on_its_row(sched_kit: SchedKit, tmp_path: Path) -> None:
    module = await sched_kit.start()
    journal = tmp_path / "journal"
    tasks = module.tasks
    task = await tasks.create(task_body(NEVER_SOON, kind="script", parameters={"argv": sleeper(tmp_path, journal)}), by=principal(Role.ADMIN))
    with trio.fail_after(TIMEOUT):
        run = await tasks.run_now(task.id)
        while True:
            row = await sched_kit.store.read(run_row(run.id))
            if row["pid"] is not None:
                break
            await trio.sleep(0.01)
        assert row["status"] == "running"
        assert abs(psutil.Process(row["pid"]).create_time() - row["create_time"]) < 0.1
        await tasks.delete(task.id, by=principal(Role.ADMIN))  # cancels the run: its group is stopped
        await settled(tasks, task.id)
        await module.stop()
    assert not psutil.pid_exists(row["pid"]) or psutil.Process(row["pid"]).status() == psutil.STATUS_ZOMBIE


async def test_the_boot_after_a_crash_fails_the_runs_left_running_and_stops_their_processes(
    sched_kit: SchedKit, tmp_path: Path
) -> None:
    module = await sched_kit.start()
    task = await module.tasks.create(task_body(NEVER_SOON), by=principal(Role.OPERATOR))
    await module.stop()
    journal = tmp_path / "journal"
    jobs = Jobs(sched_kit.store, sched_kit.bus)
    spawned: list[OSProcess] = []
    try:
        with trio.fail_after(TIMEOUT):
            # What a kill -9 leaves: a script still running, its run and job still "running".
            orphan = await OSProcess.spawn(sleeper(tmp_path, journal))
            spawned.append(orphan)
            while not journal.exists():
                await trio.sleep(0.01)
            # And a run whose recorded pid now belongs to an unrelated process.
            stranger = await OSProcess.spawn([sys.executable, "-c", "import time; time.sleep(600)"])
            spawned.append(stranger)
            assert orphan.create_time is not None and stranger.create_time is not None
            job = await jobs.create("task job", "task.run", state=RunState.RUNNING)
            other_job = await jobs.create("task job", "task.run", state=RunState.RUNNING)
            crashed = await sched_kit.store.write(crashed_run(task.id, job.id, orphan.pid, orphan.create_time))
            reused = await sched_kit.store.write(crashed_run(task.id, other_job.id, stranger.pid, stranger.create_time - 50))

            module = await sched_kit.start()
            assert await orphan.wait() == 0, "stopped with SIGTERM (it exits 0 on it)"
            assert journal.read_text().splitlines() == [f"start {orphan.pid}", f"exit {orphan.pid}"]
            assert stranger.returncode is None, "a reused pid is left alone"
            for run_id, job_id in ((crashed, job.id), (reused, other_job.id)):
                row = await sched_kit.store.read(run_row(run_id))
                assert row["status"] == "failed" and row["error"] == INTERRUPTED
                finished = await jobs.get(job_id)
                assert finished.status is JobStatus.FAILED and INTERRUPTED in (finished.logs or "")
            await module.stop()
    finally:
        for proc in spawned:
            if proc.returncode is None:
                await proc.stop(1.0)
            await proc.aclose()
