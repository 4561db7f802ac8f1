"""``Recorder``: a domain's run rows and their ``jobs`` entries, written in batches.

Written one at a time, a run costs four writes (its row ``running``, its job, its final row, the
job's end), each a round trip through the single writer, and a thousand runs due at one instant
queue four thousand of them behind each other. A recorder (one per domain, a child of the
domain's supervisor) does instead:

- **Noting never waits.** A run is noted when it starts (:meth:`Recorder.started`: its row and
  its job) and when it ends (:meth:`Recorder.finished`); a run that never ran when it is skipped
  (:meth:`Recorder.skipped`). Each answers a :class:`RunNote` whose events say when the start
  and the latest change are in the database.
- **One write per batch.** The loop (:meth:`Recorder.run`) writes what was noted
  ``flush_interval`` seconds after the first note, in one store write: Core ``executemany``
  inserts of the new rows and jobs, and ``executemany`` updates of the ones already written. A
  run that ended before its start was written is inserted as it ended: one row and one job
  instead of four writes.
- **Jobs are published once written**, on ``job.<id>``, as every job is (:mod:`actors.kit.jobs`).
- **Pruning by count.** With ``keep``, the recorder knows how many rows each owner (a task, a
  workflow) has (counted once, then kept up to date) and prunes an owner beyond its ``keep``
  newest runs in the same transaction, so a burst of ten thousand first runs does not pay ten
  thousand pruning queries.
- **A deleted owner takes its runs along.** With an owners table, a batch checks in its
  transaction which owners still exist; notes of the others are dropped
  (``RunNote.error`` says so).
- **Failures are retried, then reported.** A failed write is retried with the next batch, at
  most :data:`WRITE_ATTEMPTS` times; then its notes get the error and their waiters wake.
- **Nothing noted is lost on a clean stop:** stopping writes everything noted (shielded, within
  ``stop_timeout``). A run the database never saw the end of is the domain's recovery's at the
  next start (:meth:`Recorder.recover`).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import trio
from sqlalchemy import Column, Table, bindparam, delete, func, insert, select, update
from sqlalchemy.orm import Session

from vareon_runtime.checks import check_counts
from vareon_runtime.errors import NotFoundError, StoreClosedError, VareonError
from vareon_runtime.store import Store

from .jobs import Jobs, finished_job_row
from .models import JobRecord
from .states import RunState

__all__ = ["WRITE_ATTEMPTS", "Interrupted", "LazyEvent", "Recorder", "RunNote", "RunTable", "prune"]

log = logging.getLogger("vareon.kit.recorder")

WRITE_ATTEMPTS = 3
"""Writes of one note before it is given up (and its waiters get the error)."""

_JOBS = JobRecord.__table__
_JOB_CHANGES = ("status", "progress", "updated_at", "logs", "details")
_IN_CHUNK = 500  # ids per IN (...) list: far below every driver's parameter limit


@dataclass(frozen=True)
class RunTable:
    """Where a domain keeps its runs.

    Attributes:
        table: the runs' table (``task_runs``); its ``id`` is the run's id, its ``status`` a
            :class:`~actors.kit.states.RunState` value.
        owner: the column naming what the run belongs to (``task_id``).
        owners: the table of the owners (``scheduled_tasks``), whose ``id`` is checked in each
            batch (a run of a deleted owner is dropped); None to write without the check.
        newest: the columns that order an owner's runs, newest first (pruning keeps the first).
        changes: the columns a later note may change (the rest are written once).
        job: the column holding the run's job id, if the runs have jobs.
        end: the column of the end time, set by recovery.
        error: the column of the error text, set by recovery.
        identity: the columns of the process group a run started (pid, creation time), read by
            recovery, if the runs start processes.
    """

    table: Table
    owner: Column[Any]
    owners: Table | None
    newest: tuple[Column[Any], ...]
    changes: tuple[str, ...]
    job: str | None = "job_id"
    end: str = "end_time"
    error: str = "error"
    identity: tuple[str, str] | None = None

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(column.name for column in self.table.columns)


@dataclass(frozen=True)
class Interrupted:
    """A run the last runtime left running (recovery marked it failed)."""

    run_id: str
    owner_id: str
    job_id: str | None
    pid: int | None
    create_time: float | None


class LazyEvent:
    """A :class:`trio.Event` made only once someone waits for it (``set``, ``is_set``, ``wait``).

    Ten thousand runs live at once each have three (the run's ``done``, its note's ``inserted``
    and ``written``), and most are set before anyone waits: a trio event with its set of waiters
    is five times the size of this (decision 0029).
    """

    __slots__ = ("_event", "_flag")

    def __init__(self) -> None:
        self._event: trio.Event | None = None
        self._flag = False

    def is_set(self) -> bool:
        return self._flag

    def set(self) -> None:
        self._flag = True
        if self._event is not None:
            self._event.set()

    async def wait(self) -> None:
        if self._flag:
            await trio.lowlevel.checkpoint()
            return
        if self._event is None:
            self._event = trio.Event()
        await self._event.wait()


@dataclass(eq=False, slots=True)
class RunNote:
    """One run (or skipped run) on its way to the database.

    Attributes:
        row: the run's row as it stands (every column of its table).
        job: its ``jobs`` row as it stands, or None (a skipped run has no job).
        inserted: set once the row (and job) are in the database, or given up.
        written: set once the latest change is in the database, or given up.
        error: why the note was given up (its owner was deleted, the database failed).
    """

    row: dict[str, Any]
    job: dict[str, Any] | None
    inserted: LazyEvent = field(default_factory=LazyEvent)
    written: LazyEvent = field(default_factory=LazyEvent)
    error: BaseException | None = None
    in_database: bool = False
    version: int = 0
    queued: bool = False
    attempts: int = 0
    owner: str = ""

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


class Recorder:
    """The run rows of one domain (see the module docstring).

    Args:
        store: the runtime's store.
        jobs: where the jobs are published once written.
        runs: the domain's runs table.
        keep: runs kept per owner (the newest); None keeps all.
        flush_interval: seconds between the first note and its write.
        batch_max: the most notes one write takes.
        stop_timeout: seconds a stop may spend writing what is noted.
    """

    def __init__(
        self,
        store: Store,
        jobs: Jobs,
        runs: RunTable,
        *,
        keep: int | None = None,
        flush_interval: float = 0.05,
        batch_max: int = 4096,
        stop_timeout: float = 10.0,
    ) -> None:
        if keep is not None:
            check_counts({"keep": keep})
        self.store = store
        self.jobs = jobs
        self.runs = runs
        self.keep = keep
        self.flush_interval = flush_interval
        self.batch_max = batch_max
        self.stop_timeout = stop_timeout
        self._columns = runs.columns
        self._queue: list[RunNote] = []
        self._wakeup = trio.Event()
        self._counts: dict[str, int] = {}  # owner id -> rows in the table, once known
        self.stats = {"writes": 0, "rows": 0, "given_up": 0}

    # ------------------------------------------------------------------ noting

    def started(self, row: dict[str, Any], job: dict[str, Any] | None) -> RunNote:
        """Note a run that started: its row (``running``) and its job."""
        note = RunNote({column: row.get(column) for column in self._columns}, job)
        note.owner = str(note.row[self.runs.owner.name])
        self._queue_note(note)
        return note

    def changed(self, note: RunNote, changes: dict[str, Any]) -> None:
        """Note ``changes`` to a run's row (the process group it started)."""
        note.row.update(changes)
        note.version += 1
        note.written = LazyEvent() if note.written.is_set() else note.written
        self._queue_note(note)

    def finished(
        self, note: RunNote, changes: dict[str, Any], *, job_log: str | None = None, job_details: dict[str, Any] | None = None
    ) -> None:
        """Note how a run ended: ``changes`` to its row (``status``, end time, logs...); its job
        ends in the same state with ``job_log`` appended and ``job_details`` merged."""
        if note.job is not None:
            when: datetime | None = changes.get(self.runs.end)
            note.job = finished_job_row(note.job, RunState(changes["status"]), log=job_log, details=job_details, now=when)
        self.changed(note, changes)

    def skipped(self, row: dict[str, Any]) -> RunNote:
        """Note a run that never ran: its row, already final (``skipped``, no job)."""
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

    # ------------------------------------------------------------------ recovery

    async def recover(self, reason: str, *, now: datetime) -> list[Interrupted]:
        """Mark the runs a crashed runtime left pending or running as failed with ``reason``,
        and their jobs; answers them (with the process groups they started, to be stopped)."""
        runs, table = self.runs, self.runs.table
        unfinished = (RunState.PENDING.value, RunState.RUNNING.value)

        def write(session: Session) -> tuple[list[Interrupted], list[dict[str, Any]]]:
            connection = session.connection()
            found = connection.execute(select(table).where(table.c.status.in_(unfinished))).mappings().all()
            if not found:
                return [], []
            ids = [row["id"] for row in found]
            for start in range(0, len(ids), _IN_CHUNK):
                chunk = ids[start : start + _IN_CHUNK]
                connection.execute(
                    update(table)
                    .where(table.c.id.in_(chunk))
                    .values({"status": RunState.FAILED.value, runs.end: now, runs.error: reason})
                )
            job_ids = [row[runs.job] for row in found if runs.job and row[runs.job]]
            ended: list[dict[str, Any]] = []
            for start in range(0, len(job_ids), _IN_CHUNK):
                chunk = job_ids[start : start + _IN_CHUNK]
                for job in connection.execute(select(_JOBS).where(_JOBS.c.id.in_(chunk))).mappings().all():
                    if RunState(job["status"]).finished:
                        continue
                    values = finished_job_row(dict(job), RunState.FAILED, log=reason, now=now)
                    connection.execute(update(_JOBS).where(_JOBS.c.id == job["id"]).values({n: values[n] for n in _JOB_CHANGES}))
                    ended.append(values)
            pid, created = runs.identity if runs.identity else (None, None)
            left = [
                Interrupted(
                    run_id=row["id"],
                    owner_id=row[runs.owner.name],
                    job_id=row[runs.job] if runs.job else None,
                    pid=row[pid] if pid else None,
                    create_time=row[created] if created else None,
                )
                for row in found
            ]
            return left, ended

        left, ended = await self.store.write(write)
        for job in ended:
            self.jobs.announce(job)
        return left

    # ------------------------------------------------------------------ writing

    async def run(self, *, task_status: trio.TaskStatus[Recorder] = trio.TASK_STATUS_IGNORED) -> None:
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
                note._give_up(StoreClosedError("the module stopped before this run could be recorded"))
            if self._queue:
                log.error("%s: %d runs could not be recorded before the stop", self.runs.table.name, len(self._queue))
            self._queue = []

    async def _write_batch(self) -> bool:
        """Write up to ``batch_max`` queued notes; False when the store is gone."""
        batch, self._queue = self._queue[: self.batch_max], self._queue[self.batch_max :]
        snapshots = []
        for note in batch:
            note.queued = False
            snapshots.append(
                _Snapshot(note, note.version, not note.in_database, dict(note.row), dict(note.job) if note.job else None)
            )
        counts = {snap.note.owner: self._counts[snap.note.owner] for snap in snapshots if snap.note.owner in self._counts}
        write = _BatchWrite(self.runs, self.keep, snapshots, counts)
        try:
            await self.store.write(write)
            existing, counts = write.existing, write.counts
        except StoreClosedError as exc:
            for note in batch:
                note._give_up(exc)
            return False
        except VareonError as exc:
            self._retry(batch, exc)
            return True
        finally:
            write.release()
        self.stats["writes"] += 1
        self._counts.update(counts)
        for snap in snapshots:
            note = snap.note
            if snap.insert and existing is not None and note.owner not in existing:
                self._counts.pop(note.owner, None)
                note._give_up(NotFoundError(f"{self.runs.owner.name} {note.owner} was deleted before its run was recorded"))
                continue
            self.stats["rows"] += 1
            note.in_database = True
            note.attempts = 0
            note.inserted.set()
            if snap.job is not None:
                self.jobs.announce(snap.job)
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
            "%s: writing %d runs failed (%s); %s",
            self.runs.table.name, len(batch), error,
            f"{given_up} given up after {WRITE_ATTEMPTS} attempts" if given_up else "retrying",
        )  # fmt: skip



class _BatchWrite:
    """The store write of one batch (it may run more than once: the store re-runs a batch
    without a write that failed), from ``known``, the row counts of the owners the recorder
    knows. It answers through its attributes: ``existing`` (the ids of the owners that exist, or
    None when not checked) and ``counts`` (the owners' row counts after the batch).

    The store keeps the function of its last write until its next one, which after a burst of
    runs may be minutes away: :meth:`release` lets go of the batch (its notes, their rows and
    jobs) as soon as the recorder has read the answer, so none of it outlives the burst.
    """

    __slots__ = ("counts", "existing", "keep", "known", "runs", "snapshots")

    def __init__(self, runs: RunTable, keep: int | None, snapshots: list[_Snapshot], known: dict[str, int]) -> None:
        self.runs = runs
        self.keep = keep
        self.snapshots = snapshots
        self.known = known
        self.counts: dict[str, int] = known
        self.existing: set[str] | None = None

    def __repr__(self) -> str:
        return f"recorder batch of {len(self.snapshots)} {self.runs.table.name} notes"

    def release(self) -> None:
        """Let go of the batch and the answer (once the recorder has read it)."""
        self.snapshots = []
        self.known = self.counts = {}
        self.existing = None

    def __call__(self, session: Session) -> None:
        runs, keep, snapshots, counts = self.runs, self.keep, self.snapshots, self.known
        table, owner = runs.table, runs.owner
        connection = session.connection()
        existing: set[str] | None = None
        inserts = [snap for snap in snapshots if snap.insert]
        if runs.owners is not None:
            existing = set()
            wanted = sorted({snap.note.owner for snap in inserts})
            for start in range(0, len(wanted), _IN_CHUNK):
                chunk = wanted[start : start + _IN_CHUNK]
                existing.update(connection.execute(select(runs.owners.c.id).where(runs.owners.c.id.in_(chunk))).scalars())
            inserts = [snap for snap in inserts if snap.note.owner in existing]
        updates = [snap for snap in snapshots if not snap.insert]
        if inserts:
            connection.execute(insert(table), [snap.row for snap in inserts])
            jobs = [snap.job for snap in inserts if snap.job is not None]
            if jobs:
                connection.execute(insert(_JOBS), jobs)
        if updates:
            connection.execute(
                update(table).where(table.c.id == bindparam("run_id")),
                [{"run_id": snap.row["id"], **{name: snap.row[name] for name in runs.changes}} for snap in updates],
            )
            jobs = [snap.job for snap in updates if snap.job is not None]
            if jobs:
                connection.execute(
                    update(_JOBS).where(_JOBS.c.id == bindparam("job_id")),
                    [{"job_id": job["id"], **{name: job[name] for name in _JOB_CHANGES}} for job in jobs],
                )
        self.existing = existing
        if keep is None:
            return
        added = Counter(snap.note.owner for snap in inserts)
        fresh = dict(counts)
        unknown = sorted(owner_id for owner_id in added if owner_id not in fresh)
        for start in range(0, len(unknown), _IN_CHUNK):
            chunk = unknown[start : start + _IN_CHUNK]
            found = dict(connection.execute(select(owner, func.count()).where(owner.in_(chunk)).group_by(owner)).all())
            # Keyed by the notes' own id strings, not the database's copies: the counts live as
            # long as the recorder, and copies made during a burst would pin its memory.
            fresh.update({owner_id: int(found[owner_id]) for owner_id in chunk if owner_id in found})  # with the rows just added
        for owner_id, n in added.items():
            if owner_id in counts:
                fresh[owner_id] = counts[owner_id] + n
            if fresh.get(owner_id, 0) > keep:
                prune(session, runs, owner_id, keep)
                fresh[owner_id] = keep
        self.counts = fresh


def prune(session: Session, runs: RunTable, owner_id: str, keep: int) -> None:
    """Delete the runs of ``owner_id`` beyond the newest ``keep`` (one statement)."""
    table = runs.table
    newest = select(table.c.id).where(runs.owner == owner_id).order_by(*(column.desc() for column in runs.newest)).limit(keep)
    session.connection().execute(delete(table).where(runs.owner == owner_id, table.c.id.not_in(newest.scalar_subquery())))
