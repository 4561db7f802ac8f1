"""The agents' tables: ``agents`` and their captured output, ``agent_logs``.

They live on the kernel's :class:`~vareon_runtime.store.Base`; their migration is the revision
``0001_myntrix`` on the ``myntrix`` branch (``actors/myntrix/agents/migrations``; its revision
``0002_myntrix_jobs`` created the ``jobs`` table, which the kit owns now: :mod:`actors.kit.models`).

An agent row holds what the user configured (``name``, ``type``, ``configuration``,
``desired_state``) beside what supervision observed (``status``, ``health``, ``pid``,
``process_create_time``, ``restarts``, ``exit_code``, ``last_error``, ``last_run``). Only the
agent's own actor writes the observed columns; the :class:`~actors.myntrix.agents.Agents` face
writes the configured ones (``desired_state`` excepted: start and stop go through the actor).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, Session, mapped_column

from vareon_runtime.clock import utcnow
from vareon_runtime.store.models import Base, UTCDateTime

from .schemas import Agent

__all__ = ["AgentLogRecord", "AgentRecord", "LoadedAgent", "load_agent"]


class AgentRecord(Base):
    """One agent: a program the runtime keeps running (or stopped) as configured."""

    __tablename__ = "agents"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    type: Mapped[str] = mapped_column(String(64), default="process")
    # stopped | starting | running | stopping | backoff | error
    status: Mapped[str] = mapped_column(String(16), default="stopped")
    health: Mapped[int] = mapped_column(Integer, default=0)
    # When its process last started.
    last_run: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # An AgentConfig, snake_case keys.
    configuration: Mapped[dict[str, Any]] = mapped_column(JSON)
    # running | stopped: what the user asked for; survives runtime restarts.
    desired_state: Mapped[str] = mapped_column(String(16), default="stopped")
    # The live process's pid and psutil creation time: together they identify it across a
    # runtime crash (a pid alone may have been reused by then).
    pid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    process_create_time: Mapped[float | None] = mapped_column(Float, nullable=True)
    restarts: Mapped[int] = mapped_column(Integer, default=0)
    exit_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    def __repr__(self) -> str:
        return f"AgentRecord(id={self.id!r}, name={self.name!r}, status={self.status!r})"


class AgentLogRecord(Base):
    """One line an agent's process wrote (``stdout``/``stderr``) or the runtime noted (``system``)."""

    __tablename__ = "agent_logs"
    __table_args__ = (Index("ix_agent_logs_agent_id_id", "agent_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    agent_id: Mapped[str] = mapped_column(String(36), ForeignKey("agents.id", ondelete="CASCADE"))
    time: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    stream: Mapped[str] = mapped_column(String(8))
    line: Mapped[str] = mapped_column(Text)

    def __repr__(self) -> str:
        return f"AgentLogRecord(id={self.id!r}, agent_id={self.agent_id!r}, stream={self.stream!r})"


@dataclass(frozen=True)
class LoadedAgent:
    """An agent row as its actor needs it: the wire shape and the process's creation time."""

    agent: Agent
    process_create_time: float | None


def load_agent(agent_id: str) -> Callable[[Session], LoadedAgent | None]:
    """A store read returning the agent's row (None when there is none)."""

    def load(session: Session) -> LoadedAgent | None:
        row = session.get(AgentRecord, agent_id)
        if row is None:
            return None
        return LoadedAgent(Agent.model_validate(row), row.process_create_time)

    return load
