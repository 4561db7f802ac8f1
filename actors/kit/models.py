"""The kit's table: ``jobs``, where every run and lifecycle action of every domain is listed.

The table was born with the Myntrix agents (revision ``0002_myntrix_jobs``, on the ``myntrix``
branch, whose history stays where it was written); the kit's own revisions
(``actors/kit/migrations``, branch ``kit``) change it from there. ``status`` holds a
:class:`~actors.kit.states.RunState` value; the wire says it in seed 001's words
(:data:`~actors.kit.schemas.JOB_WORDS`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from vareon_runtime.clock import utcnow
from vareon_runtime.store.models import Base, UTCDateTime

__all__ = ["JobRecord"]


class JobRecord(Base):
    """One piece of work and its outcome: an agent's start, a device upload, a task run..."""

    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_status", "status"), Index("ix_jobs_created_at", "created_at"))

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    # What reported it: "agent.start", "device.upload", "task.run", ...
    type: Mapped[str] = mapped_column(String(64))
    # A RunState value: pending | running | succeeded | failed | cancelled
    status: Mapped[str] = mapped_column(String(16), default="pending")
    progress: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
    # Lines the job noted, newline-separated.
    logs: Mapped[str | None] = mapped_column(Text, nullable=True)
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)

    def __repr__(self) -> str:
        return f"JobRecord(id={self.id!r}, type={self.type!r}, status={self.status!r})"
