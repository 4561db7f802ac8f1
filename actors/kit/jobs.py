"""``Jobs``: the ``jobs`` table as every domain reports into it and the web front lists it.

A job is created ``pending`` or ``running``, may note progress (0-100) and log lines, and ends
``succeeded`` (progress 100), ``failed`` or ``cancelled`` (a ``timeout`` of a run is a failed
job). Every change is published on ``job.<id>`` once written (a dashboard subscribes to
``job.*`` over ``/api/websocket``), whichever of the three ways wrote it:

- **one write per change** (:meth:`Jobs.create`, :meth:`Jobs.update`, :meth:`Jobs.finish`): a
  device upload, whose job the request answers and whose progress moves for minutes;
- **in the transaction of the change it reports** (:class:`JobTicket`): an agent's start, stop
  or restart is written by the agent's actor together with the agent's new state, so a start is
  one commit and the job never disagrees with the agent;
- **in batches** (:class:`~actors.kit.recorder.Recorder`): task runs, thousands at one instant,
  whose rows are built here too (:func:`job_row`, :func:`finished_job_row`).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, or_, select, update
from sqlalchemy.orm import Session

from vareon_runtime.bus import EventBus
from vareon_runtime.clock import utcnow
from vareon_runtime.errors import ConflictError, InvalidRequestError, NotFoundError
from vareon_runtime.store import Store

from .models import JobRecord
from .parsing import check_page, enum_value
from .schemas import JOB_WORDS, Job, JobStatus
from .states import RunState
from .wire import Page

__all__ = [
    "JOB_LOG_MAX",
    "JobTicket",
    "Jobs",
    "finished_job_row",
    "job_row",
    "job_topic",
]

JOB_LOG_MAX = 64 * 1024
"""Characters of logs a job keeps; beyond, the oldest are cut (so a chatty job stays small)."""

_JOBS = JobRecord.__table__
_COLUMNS = tuple(column.name for column in _JOBS.columns)
_CHANGES = ("status", "progress", "updated_at", "logs", "details")
_ENDS = (RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELLED)


def job_topic(job_id: str) -> str:
    """The bus topic a job's every change is published on."""
    return f"job.{job_id}"


def _append(logs: str | None, line: str | None) -> str | None:
    if line is None:
        return logs
    text = f"{logs}\n{line}" if logs else line
    return text[-JOB_LOG_MAX:]


def _end_state(state: RunState) -> RunState:
    if state is RunState.TIMEOUT:
        return RunState.FAILED  # a job that ran out of time failed; its log says why
    if state not in _ENDS:
        raise InvalidRequestError(f"a job ends succeeded, failed or cancelled, not {state.value!r}")
    return state


def job_row(
    name: str,
    type: str,
    *,
    state: RunState = RunState.PENDING,
    log: str | None = None,
    details: Mapping[str, Any] | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The ``jobs`` row of a new job, checked.

    Raises:
        InvalidRequestError: a state other than pending or running, or an empty name or type.
    """
    if state not in (RunState.PENDING, RunState.RUNNING):
        raise InvalidRequestError(f"a job starts pending or running, not {state.value!r}; finish it later")
    if not name or not type:
        raise InvalidRequestError(f"a job needs a name and a type, not {name!r} and {type!r}")
    now = now or utcnow()
    return {
        "id": str(uuid.uuid4()),
        "name": name[:255],
        "type": type[:64],
        "status": state.value,
        "progress": 0,
        "created_at": now,
        "updated_at": now,
        "logs": _append(None, log),
        "details": dict(details) if details is not None else None,
    }


def finished_job_row(
    row: Mapping[str, Any],
    state: RunState,
    *,
    log: str | None = None,
    details: Mapping[str, Any] | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """``row`` ended in ``state`` (succeeded with progress 100, failed, cancelled; a timeout is
    a failure), ``log`` appended and ``details`` merged in.

    Raises:
        InvalidRequestError: ``state`` does not end a job.
    """
    state = _end_state(state)
    merged = {**(row.get("details") or {}), **(details or {})} if details is not None else row.get("details")
    return {
        **row,
        "status": state.value,
        "progress": 100 if state is RunState.SUCCEEDED else row.get("progress", 0),
        "updated_at": now or utcnow(),
        "logs": _append(row.get("logs"), log),
        "details": merged,
    }


@dataclass(eq=False)
class JobTicket:
    """A job written by someone else's transaction: the agent's actor writes its lifecycle job
    with the agent's new state (:meth:`apply` inside its store write, :meth:`Jobs.published`
    after the commit).

    Attributes:
        row: the job as it stands.
        in_database: set once a write of it has committed.
    """

    row: dict[str, Any]
    in_database: bool = False
    _dirty: bool = field(default=True, repr=False)

    @property
    def id(self) -> str:
        return str(self.row["id"])

    @property
    def state(self) -> RunState:
        return RunState(self.row["status"])

    def start(self, log: str | None = None) -> None:
        """The work began: ``running``."""
        self.row = {**self.row, "status": RunState.RUNNING.value, "logs": _append(self.row.get("logs"), log), "updated_at": utcnow()}
        self._dirty = True

    def finish(self, state: RunState, *, log: str | None = None, details: Mapping[str, Any] | None = None) -> None:
        """The work ended in ``state``."""
        self.row = finished_job_row(self.row, state, log=log, details=details)
        self._dirty = True

    def apply(self, session: Session) -> bool:
        """Write the job as it stands, inside the caller's store write; False when unchanged."""
        if not self._dirty:
            return False
        connection = session.connection()
        if self.in_database:
            connection.execute(update(_JOBS).where(_JOBS.c.id == self.id).values({name: self.row[name] for name in _CHANGES}))
        else:
            connection.execute(insert(_JOBS).values({name: self.row.get(name) for name in _COLUMNS}))
        return True

    def committed(self) -> None:
        """The write that applied it committed."""
        self.in_database = True
        self._dirty = False


class Jobs:
    """The jobs of one runtime.

    Args:
        store: the runtime's store.
        bus: where each change is published once written (``job.<id>``).
    """

    title = "jobs module"
    """What the web front calls it when it is not running."""

    def __init__(self, store: Store, bus: EventBus) -> None:
        self.store = store
        self.bus = bus

    # ------------------------------------------------------------------ events

    def publish(self, row: Mapping[str, Any] | Job) -> Job:
        """Publish a job as written on ``job.<id>``; answers its wire shape."""
        job = Job.model_validate(row)
        self.announce(job)
        return job

    def announce(self, row: Mapping[str, Any] | Job) -> None:
        """Publish a job as written on ``job.<id>`` if anyone listens: its wire shape is made
        only then (a scheduler firing thousands of runs at once pays nothing for events nobody
        reads)."""
        topic = job_topic(row.id if isinstance(row, Job) else row["id"])
        if self.bus.wants(topic):
            job = row if isinstance(row, Job) else Job.model_validate(row)
            self.bus.publish(topic, job.model_dump(mode="json", by_alias=True))

    def published(self, ticket: JobTicket) -> Job:
        """Note that the write that applied ``ticket`` committed, and publish it."""
        ticket.committed()
        return self.publish(ticket.row)

    # ------------------------------------------------------------------ writes

    def ticket(self, name: str, type: str, *, log: str | None = None, details: Mapping[str, Any] | None = None) -> JobTicket:
        """A new job (``pending``) that another transaction will write (see :class:`JobTicket`)."""
        return JobTicket(job_row(name, type, log=log, details=details))

    async def settle(self, ticket: JobTicket, state: RunState, *, log: str | None = None) -> Job:
        """End ``ticket`` in ``state`` with one write of its own (the work it reports did not get
        as far as writing it: a refusal, a crash)."""
        if not ticket.state.finished:
            ticket.finish(state, log=log)
        elif log is not None:
            ticket.row = {**ticket.row, "logs": _append(ticket.row.get("logs"), log)}
            ticket._dirty = True

        def write(session: Session) -> None:
            ticket.apply(session)

        await self.store.write(write)
        return self.published(ticket)

    async def create(
        self,
        name: str,
        type: str,
        *,
        state: RunState = RunState.PENDING,
        log: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> Job:
        """Record a new job, ``pending`` or ``running``.

        Raises:
            InvalidRequestError: another state, or an empty name or type.
        """
        record = job_row(name, type, state=state, log=log, details=details)

        def write(session: Session) -> None:
            session.connection().execute(insert(_JOBS).values(record))

        await self.store.write(write)
        return self.publish(record)

    async def update(
        self, job_id: str, *, progress: int | None = None, state: RunState | None = None, log: str | None = None
    ) -> Job:
        """Note progress (0-100), a move from pending to running, or a log line.

        Raises:
            NotFoundError: no job has that id.
            ConflictError: the job is finished.
            InvalidRequestError: progress outside 0..100, or a state other than running.
        """
        if progress is not None and not 0 <= progress <= 100:
            raise InvalidRequestError(f"progress must be between 0 and 100, not {progress!r}")
        if state is not None and state is not RunState.RUNNING:
            raise InvalidRequestError(f"a job moves on to running with update(), not to {state.value!r}; end it with finish()")
        return self.publish(await self.store.write(self._change(job_id, progress=progress, state=state, log=log)))

    async def finish(
        self, job_id: str, state: RunState, *, log: str | None = None, details: Mapping[str, Any] | None = None
    ) -> Job:
        """End a job: ``succeeded`` (progress 100), ``failed`` (a timeout too) or ``cancelled``;
        ``details`` are merged in.

        Raises:
            NotFoundError: no job has that id.
            ConflictError: the job is already finished.
            InvalidRequestError: ``state`` does not end a job.
        """
        state = _end_state(state)
        return self.publish(
            await self.store.write(
                self._change(
                    job_id, progress=100 if state is RunState.SUCCEEDED else None, state=state, log=log, details=details
                )
            )
        )

    async def recover(self, types: Sequence[str], reason: str) -> int:
        """Fail the unfinished jobs of ``types`` (a type ending in ``.`` is a prefix): the work
        they reported was lost with the runtime (a crash, a kill -9). Answers how many."""
        now = utcnow()
        matches = [JobRecord.type.startswith(kind) if kind.endswith(".") else JobRecord.type == kind for kind in types]
        unfinished = (RunState.PENDING.value, RunState.RUNNING.value)

        def write(session: Session) -> list[dict[str, Any]]:
            rows = session.scalars(select(JobRecord).where(JobRecord.status.in_(unfinished), or_(*matches))).all()
            ended = []
            for row in rows:
                values = finished_job_row(_as_row(row), RunState.FAILED, log=reason, now=now)
                for name in _CHANGES:
                    setattr(row, name, values[name])
                ended.append(values)
            return ended

        ended = await self.store.write(write) if matches else []
        for row in ended:
            self.publish(row)
        return len(ended)

    # ------------------------------------------------------------------ reads

    async def get(self, job_id: str) -> Job:
        """One job.

        Raises:
            NotFoundError: no job has that id.
        """

        def read(session: Session) -> Job | None:
            row = session.get(JobRecord, str(job_id))
            return Job.model_validate(row) if row is not None else None

        job = await self.store.read(read)
        if job is None:
            raise NotFoundError(f"no job has the id {job_id!r}")
        return job

    async def list(
        self, *, limit: int = 50, offset: int = 0, status: JobStatus | str | None = None, type: str | None = None
    ) -> Page[Job]:
        """A page of jobs, newest first, and how many match (``status``, ``type`` filter).

        Raises:
            InvalidRequestError: ``limit`` outside 1..500, ``offset`` outside 0..OFFSET_MAX, an unknown status.
        """
        check_page(limit, offset)
        conditions = []
        if status is not None:
            states = JOB_WORDS.states(enum_value(JobStatus, status))
            conditions.append(JobRecord.status.in_([state.value for state in states]))
        if type is not None:
            conditions.append(JobRecord.type == type)

        def page(session: Session) -> Page[Job]:
            rows = session.scalars(
                select(JobRecord).where(*conditions).order_by(JobRecord.created_at.desc(), JobRecord.id).limit(limit).offset(offset)
            ).all()
            total = session.scalar(select(func.count()).select_from(JobRecord).where(*conditions)) or 0
            return Page([Job.model_validate(row) for row in rows], total)

        return await self.store.read(page)

    @staticmethod
    def _change(
        job_id: str,
        *,
        progress: int | None,
        state: RunState | None,
        log: str | None,
        details: Mapping[str, Any] | None = None,
    ) -> Callable[[Session], dict[str, Any]]:
        def change(session: Session) -> dict[str, Any]:
            row = session.get(JobRecord, str(job_id))
            if row is None:
                raise NotFoundError(f"no job has the id {job_id!r}")
            if RunState(row.status).finished:
                raise ConflictError(
                    f"job {job_id} is already {JOB_WORDS.wire(row.status).value}; a finished job does not change"
                )
            if progress is not None:
                row.progress = progress
            if state is not None:
                row.status = state.value
            row.logs = _append(row.logs, log)
            if details is not None:
                row.details = {**(row.details or {}), **details}
            row.updated_at = utcnow()
            session.flush()
            return _as_row(row)

        return change


def _as_row(record: JobRecord) -> dict[str, Any]:
    return {name: getattr(record, name) for name in _COLUMNS}
