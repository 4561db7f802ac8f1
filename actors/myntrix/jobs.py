"""``Jobs``: the ``jobs`` table as the domains report into it and the web front lists it.

A job is created ``pending`` or ``running``, may note progress (0-100) and log lines, and ends
``completed`` (progress 100) or ``failed`` with the reason in its logs. The agents report every
start, stop and restart here (:meth:`actors.myntrix.agents.Agents.start` and kin); task runs,
workflow runs and pipeline executions are to report the same way. Each call is one store write;
when given a bus, the job as written is then published on ``job.<id>`` (a dashboard subscribes
to ``job.*`` over ``/api/websocket`` and watches an upload's progress move).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from vareon_runtime.bus import EventBus
from vareon_runtime.clock import utcnow
from vareon_runtime.errors import ConflictError, InvalidRequestError, NotFoundError
from vareon_runtime.store import Store

from .models import JobRecord, job_from_record
from .parsing import check_page, enum_value
from .schemas import Job, JobPage, JobStatus

__all__ = ["JOB_LOG_MAX", "Jobs", "finished_job_row", "job_row", "job_topic"]

JOB_LOG_MAX = 64 * 1024
"""Characters of logs a job keeps; beyond, the oldest are cut (so a chatty job stays small)."""

_LIST_LIMIT_MAX = 500
_FINISHED = (JobStatus.COMPLETED.value, JobStatus.FAILED.value)


def job_topic(job_id: str) -> str:
    """The bus topic a job's every change is published on."""
    return f"job.{job_id}"


def _append(logs: str | None, line: str | None) -> str | None:
    if line is None:
        return logs
    text = f"{logs}\n{line}" if logs else line
    return text[-JOB_LOG_MAX:]


def job_row(
    name: str,
    type: str,
    *,
    status: JobStatus = JobStatus.PENDING,
    log: str | None = None,
    details: Mapping[str, Any] | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The ``jobs`` row of a new job, checked, as :meth:`Jobs.create` writes it; writers that
    insert jobs in batches (the scheduler's run recorder) build theirs here too.

    Raises:
        InvalidRequestError: a finished status, or an empty name or type.
    """
    if status.value in _FINISHED:
        raise InvalidRequestError(f"a job starts pending or running, not {status.value!r}; finish it with finish()")
    if not name or not type:
        raise InvalidRequestError(f"a job needs a name and a type, not {name!r} and {type!r}")
    now = now or utcnow()
    return {
        "id": str(uuid.uuid4()),
        "name": name[:255],
        "type": type[:64],
        "status": status.value,
        "progress": 0,
        "created_at": now,
        "updated_at": now,
        "logs": _append(None, log),
        "details": dict(details) if details is not None else None,
    }


def finished_job_row(
    row: Mapping[str, Any], *, ok: bool, log: str | None = None, details: Mapping[str, Any] | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """``row`` (a job as :func:`job_row` made it) ended as :meth:`Jobs.finish` ends one:
    ``completed`` with progress 100, or ``failed``; ``log`` appended, ``details`` merged in."""
    merged = {**(row.get("details") or {}), **(details or {})} if details is not None else row.get("details")
    return {
        **row,
        "status": (JobStatus.COMPLETED if ok else JobStatus.FAILED).value,
        "progress": 100 if ok else row.get("progress", 0),
        "updated_at": now or utcnow(),
        "logs": _append(row.get("logs"), log),
        "details": merged,
    }


class Jobs:
    """The jobs of one runtime.

    Args:
        store: the runtime's store.
        bus: where each change is published, once written (``job.<id>``); none when not given.
    """

    def __init__(self, store: Store, bus: EventBus | None = None) -> None:
        self.store = store
        self.bus = bus

    def _published(self, job: Job) -> Job:
        if self.bus is not None:
            self.bus.publish(job_topic(job.id), job.model_dump(mode="json", by_alias=True))
        return job

    async def create(
        self,
        name: str,
        type: str,
        *,
        status: JobStatus = JobStatus.PENDING,
        log: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> Job:
        """Record a new job, ``pending`` or ``running``.

        Raises:
            InvalidRequestError: a finished status, or an empty name or type.
        """
        record = job_row(name, type, status=status, log=log, details=details)

        def insert(session: Session) -> Job:
            row = JobRecord(**record)
            session.add(row)
            session.flush()
            return job_from_record(row)

        job: Job = await self.store.write(insert)
        return self._published(job)

    async def update(
        self,
        job_id: str,
        *,
        progress: int | None = None,
        status: JobStatus | None = None,
        log: str | None = None,
    ) -> Job:
        """Note progress (0-100), a move from pending to running, or a log line.

        Raises:
            NotFoundError: no job has that id.
            ConflictError: the job is finished.
            InvalidRequestError: progress outside 0..100, or a finished status (use finish()).
        """
        if progress is not None and not 0 <= progress <= 100:
            raise InvalidRequestError(f"progress must be between 0 and 100, not {progress!r}")
        if status is not None and status.value in _FINISHED:
            raise InvalidRequestError(f"finish a job with finish(), not update(status={status.value!r})")
        return self._published(await self.store.write(self._change(job_id, progress=progress, status=status, log=log)))

    async def finish(
        self, job_id: str, *, ok: bool, log: str | None = None, details: Mapping[str, Any] | None = None
    ) -> Job:
        """End a job: ``completed`` (progress 100) or ``failed``; ``details`` are merged in.

        Raises:
            NotFoundError: no job has that id.
            ConflictError: the job is already finished.
        """
        status = JobStatus.COMPLETED if ok else JobStatus.FAILED
        return self._published(
            await self.store.write(
                self._change(job_id, progress=100 if ok else None, status=status, log=log, details=details)
            )
        )

    async def get(self, job_id: str) -> Job:
        """One job.

        Raises:
            NotFoundError: no job has that id.
        """

        def read(session: Session) -> Job | None:
            row = session.get(JobRecord, str(job_id))
            return job_from_record(row) if row is not None else None

        job = await self.store.read(read)
        if job is None:
            raise NotFoundError(f"no job has the id {job_id!r}")
        return job

    async def list(
        self, *, limit: int = 50, offset: int = 0, status: str | None = None, type: str | None = None
    ) -> JobPage:
        """A page of jobs, newest first, and how many match (``status``, ``type`` filter).

        Raises:
            InvalidRequestError: ``limit`` outside 1..500, a negative ``offset``, an unknown status.
        """
        check_page(limit, offset, _LIST_LIMIT_MAX)
        wanted = enum_value(JobStatus, status) if status is not None else None

        def page(session: Session) -> JobPage:
            query = select(JobRecord)
            count = select(func.count()).select_from(JobRecord)
            if wanted is not None:
                query = query.where(JobRecord.status == wanted)
                count = count.where(JobRecord.status == wanted)
            if type is not None:
                query = query.where(JobRecord.type == type)
                count = count.where(JobRecord.type == type)
            rows = session.scalars(
                query.order_by(JobRecord.created_at.desc(), JobRecord.id).limit(limit).offset(offset)
            ).all()
            return JobPage([job_from_record(row) for row in rows], session.scalar(count) or 0)

        return await self.store.read(page)

    @staticmethod
    def _change(
        job_id: str,
        *,
        progress: int | None,
        status: JobStatus | None,
        log: str | None,
        details: Mapping[str, Any] | None = None,
    ) -> Callable[[Session], Job]:
        def change(session: Session) -> Job:
            row = session.get(JobRecord, str(job_id))
            if row is None:
                raise NotFoundError(f"no job has the id {job_id!r}")
            if row.status in _FINISHED:
                raise ConflictError(f"job {job_id} is already {row.status}; a finished job does not change")
            if progress is not None:
                row.progress = progress
            if status is not None:
                row.status = status.value
            row.logs = _append(row.logs, log)
            if details is not None:
                row.details = {**(row.details or {}), **details}
            row.updated_at = utcnow()
            session.flush()
            return job_from_record(row)

        return change
