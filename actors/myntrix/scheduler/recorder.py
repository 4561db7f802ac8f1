"""``RunRecorder``: the ``task_runs`` rows of a scheduler module's runs, and their ``jobs``
entries, written in batches.

Written one at a time, a run costs four writes (its row ``running``, its job, its final row, the
job's end), each an ORM round trip through the single writer, and a thousand runs due at one
instant queue four thousand of them behind each other. Here:

- **Noting never waits.** A run is noted when it starts (:meth:`started`: its row ``running``
  and its job) and when it ends (:meth:`finished`); a fire time that did not run when it is
  skipped (:meth:`skipped`). Each returns a :class:`RunNote` whose events say when the start and
  the end are in the database.
- **One write per batch.** The recorder's loop (:meth:`run`, the ``run-recorder`` child of the
  module's supervisor) writes what was noted ``flush_interval`` seconds after the first note, in
  one store write: Core ``executemany`` inserts of the new rows and jobs, and ``executemany``
  updates of the ones already written. A run that ended before its start was written is
  inserted as it ended: one row and one job instead of four writes.
- **Runs first.** The scheduler starts every run due at one instant in one synchronous sweep,
  so the first write of them comes after they have all started.
- **Pruning by count.** The recorder knows how many rows each task has (counted once, then kept
  up to date) and prunes a task beyond its ``keep`` newest runs in the same transaction, so a
  burst of ten thousand first runs does not pay ten thousand pruning queries.
- **A deleted task takes its runs along.** A batch checks, in its transaction, which tasks still
  exist; notes of the others are dropped (``RunNote.error`` says so).
- **Failures are retried, then reported.** A failed write is retried with the next batch, at
  most :data:`WRITE_ATTEMPTS` times; then its notes get the error and their waiters wake. A run
  that was never written is marked failed by the module's recovery at the next start.
- **Nothing noted is lost on a clean stop:** stopping writes everything noted (shielded,
  within ``stop_timeout``).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import trio
from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.orm import Session

from vareon_runtime.errors import NotFoundError, StoreClosedError, VareonError
from vareon_runtime.store import Store

from ..jobs import finished_job_row
from ..models import JobRecord
from .models import ScheduledTaskRecord, TaskRunRecord, prune_runs

__all__ = ["WRITE_ATTEMPTS", "RunNote", "RunRecorder"]

log = logging.getLogger("vareon.myntrix.scheduler.recorder")

WRITE_ATTEMPTS = 3
"""Writes of one note before it is given up (and its waiters get the error)."""

_RUNS = TaskRunRecord.__table__
_JOBS = JobRecord.__table__
_TASKS = ScheduledTaskRecord.__table__
_IN_CHUNK = 500  # ids per IN (...) list: far below every driver's parameter limit

# The columns of a task_runs row as noted; an executemany needs the same keys in every row.
RUN_COLUMNS = (
    "id", "task_id", "scheduled_for", "start_time", "end_time", "status", "trigger",
    "exit_code", "http_status", "error", "logs", "job_id", "pid", "process_create_time",
)  # fmt: skip
_RUN_CHANGES = ("end_time", "status", "exit_code", "http_status", "error", "logs", "pid", "process_create_time")
_JOB_CHANGES = ("status", "progress", "updated_at", "logs", "details")


@dataclass(eq=False)
class RunNote:
    """One run (or skipped fire time) on its way to the database.

    Attributes:
        row: the ``task_runs`` row as it stands (every column of :data:`RUN_COLUMNS`).
        job: its ``jobs`` row as it stands, or None (a skipped fire time has no job).
        inserted: set once the row (and job) are in the database, or given up.
        written: set once the latest change is in the database, or given up.
        error: why the note was given up (the task was deleted, the database failed).
    """

    row: dict[str, Any]
    job: dict[str, Any] | None
    inserted: trio.Event = field(default_factory=trio.Event)
    written: trio.Event = field(default_factory=trio.Event)
    error: BaseException | None = None
    in_database: bool = False
    version: int = 0
    queued: bool = False
    attempts: int = 0

    @property
    def task_id(self) -> str:
        return str(self.row["task_id"])

    def _give_up(self, error: BaseException) -> None:
        self.error = error
        self.inserted.set()
        self.written.set()


@dataclass(frozen=True, slots=True)
class _Snapshot:
    """What the writer thread writes of a note: copies, so a note changing meanwhile is safe."""

    note: RunNote
    version: int
    insert: bool
    row: dict[str, Any]
    job: dict[str, Any] | None


class RunRecorder:
    """The run rows of one scheduler module (see the module docstring).

    Args:
        store: the runtime's store.
        keep: runs kept per task (the newest).
        flush_interval: seconds between the first note and its write.
        batch_max: the most notes one write takes.
        stop_timeout: seconds a stop may spend writing what is noted.
    """

    def __init__(
        self,
        store: Store,
        *,
        keep: int,
        flush_interval: float = 0.05,
        batch_max: int = 4096,
        stop_timeout: float = 10.0,
    ) -> None:
        if keep < 1:
            raise ValueError(f"keep must be at least 1, not {keep!r}")
        self.store = store
        self.keep = keep
        self.flush_interval = flush_interval
        self.batch_max = batch_max
        self.stop_timeout = stop_timeout
        self._queue: list[RunNote] = []
        self._wakeup = trio.Event()
        self._counts: dict[str, int] = {}  # task id -> rows in task_runs, once known
        self.stats = {"writes": 0, "rows": 0, "given_up": 0}

    # ------------------------------------------------------------------ noting

    def started(self, row: dict[str, Any], job: dict[str, Any] | None) -> RunNote:
        """Note a run that started: its ``task_runs`` row (``running``) and its job."""
        note = RunNote({column: row.get(column) for column in RUN_COLUMNS}, job)
        self._queue_note(note)
        return note

    def changed(self, note: RunNote, changes: dict[str, Any]) -> None:
        """Note ``changes`` to a running run's row (the process group its action started)."""
        note.row.update(changes)
        note.version += 1
        note.written = trio.Event() if note.written.is_set() else note.written
        self._queue_note(note)

    def finished(self, note: RunNote, changes: dict[str, Any], *, ok: bool, job_log: str, job_details: dict[str, Any]) -> None:
        """Note how a run ended: ``changes`` to its row (status, end time, logs...); its job ends
        ``completed`` (``ok``) or ``failed`` with ``job_log`` appended and ``job_details`` merged."""
        if note.job is not None:
            note.job = finished_job_row(note.job, ok=ok, log=job_log, details=job_details, now=changes.get("end_time"))
        self.changed(note, changes)

    def skipped(self, row: dict[str, Any]) -> RunNote:
        """Note a fire time that did not run: its row, already final (``skipped``, no job)."""
        return self.started(row, None)

    def _queue_note(self, note: RunNote) -> None:
        if note.error is not None:
            note.written.set()  # given up already: there is nothing to update
            return
        if not note.queued:
            note.queued = True
            self._queue.append(note)
            self._wakeup.set()

    @property
    def pending(self) -> int:
        """Notes waiting to be written."""
        return len(self._queue)

    # ------------------------------------------------------------------ writing

    async def run(self, *, task_status: trio.TaskStatus[RunRecorder] = trio.TASK_STATUS_IGNORED) -> None:
        """Write noted runs until cancelled; then write what is left (shielded, bounded)."""
        task_status.started(self)
        try:
            while True:
                if not self._queue:
                    self._wakeup = trio.Event()
                    await self._wakeup.wait()
                    continue
                if len(self._queue) < self.batch_max:
                    await trio.sleep(self.flush_interval)
                await self._write_batch()
        finally:
            with trio.CancelScope(shield=True) as scope:
                scope.deadline = trio.current_time() + self.stop_timeout
                while self._queue:
                    if not await self._write_batch():
                        break
            for note in self._queue:
                note.queued = False
                note._give_up(StoreClosedError("the scheduler stopped before this run could be recorded"))
            if self._queue:
                log.error("scheduler: %d task runs could not be recorded before the stop", len(self._queue))
            self._queue = []

    async def _write_batch(self) -> bool:
        """Write up to ``batch_max`` queued notes; False when the store is gone."""
        batch, self._queue = self._queue[: self.batch_max], self._queue[self.batch_max :]
        snapshots = []
        for note in batch:
            note.queued = False
            insert_it = not note.in_database
            snapshots.append(_Snapshot(note, note.version, insert_it, dict(note.row), dict(note.job) if note.job else None))
        counts = {snap.note.task_id: self._counts[snap.note.task_id] for snap in snapshots if snap.note.task_id in self._counts}
        try:
            existing, counts = await self.store.write(_writer(snapshots, counts, self.keep))
        except StoreClosedError as exc:
            for note in batch:
                note._give_up(exc)
            return False
        except VareonError as exc:
            self._retry(batch, exc)
            return True
        self.stats["writes"] += 1
        self._counts.update(counts)
        for snap in snapshots:
            note = snap.note
            if snap.insert and snap.note.task_id not in existing:
                self._counts.pop(note.task_id, None)
                note._give_up(NotFoundError(f"task {note.task_id} was deleted before its run was recorded"))
                continue
            self.stats["rows"] += 1
            note.in_database = True
            note.attempts = 0
            note.inserted.set()
            if note.version == snap.version:
                note.written.set()
            else:
                self._queue_note(note)  # changed while being written: write the change too
        return True

    def _retry(self, batch: list[RunNote], error: VareonError) -> None:
        given_up = 0
        for note in batch:
            note.attempts += 1
            if note.attempts >= WRITE_ATTEMPTS:
                note._give_up(error)
                given_up += 1
            else:
                self._queue_note(note)
        self.stats["given_up"] += given_up
        log.error(
            "scheduler: writing %d task runs failed (%s); %s",
            len(batch), error, f"{given_up} given up after {WRITE_ATTEMPTS} attempts" if given_up else "retrying",
        )


def _writer(snapshots: list[_Snapshot], counts: dict[str, int], keep: int) -> Any:
    """The store write of one batch; returns (ids of the tasks that exist, new row counts)."""

    def write(session: Session) -> tuple[set[str], dict[str, int]]:
        connection = session.connection()
        wanted = sorted({snap.note.task_id for snap in snapshots if snap.insert})
        existing: set[str] = set()
        for start in range(0, len(wanted), _IN_CHUNK):
            chunk = wanted[start : start + _IN_CHUNK]
            existing.update(connection.execute(select(_TASKS.c.id).where(_TASKS.c.id.in_(chunk))).scalars())
        inserts = [snap for snap in snapshots if snap.insert and snap.note.task_id in existing]
        updates = [snap for snap in snapshots if not snap.insert]
        if inserts:
            connection.execute(insert(_RUNS), [snap.row for snap in inserts])
            jobs = [snap.job for snap in inserts if snap.job is not None]
            if jobs:
                connection.execute(insert(_JOBS), jobs)
        if updates:
            connection.execute(
                update(_RUNS).where(_RUNS.c.id == bindparam("run_id")),
                [{"run_id": snap.row["id"], **{name: snap.row[name] for name in _RUN_CHANGES}} for snap in updates],
            )
            jobs = [snap.job for snap in updates if snap.job is not None]
            if jobs:
                connection.execute(
                    update(_JOBS).where(_JOBS.c.id == bindparam("job_id")),
                    [{"job_id": job["id"], **{name: job[name] for name in _JOB_CHANGES}} for job in jobs],
                )
        added = Counter(snap.note.task_id for snap in inserts)
        fresh = dict(counts)
        unknown = sorted(task_id for task_id in added if task_id not in fresh)
        for start in range(0, len(unknown), _IN_CHUNK):
            chunk = unknown[start : start + _IN_CHUNK]
            found = connection.execute(
                select(_RUNS.c.task_id, func.count()).where(_RUNS.c.task_id.in_(chunk)).group_by(_RUNS.c.task_id)
            ).all()
            fresh.update({task_id: int(n) for task_id, n in found})  # these include the rows just added
        for task_id, n in added.items():
            if task_id in counts:
                fresh[task_id] = counts[task_id] + n
            if fresh.get(task_id, 0) > keep:
                prune_runs(session, task_id, keep)
                fresh[task_id] = keep
        return existing, fresh

    return write

