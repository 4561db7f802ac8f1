"""The captured output of one agent: a ring buffer, the bus, and ``agent_logs`` in batches.

Every line (``stdout``, ``stderr``, or ``system`` for what the runtime did) goes at once into a
bounded ring buffer (quick ``logs?tail=``) and onto the bus (``agent.<id>.log``), and waits in
memory to be written: every ``log_flush_interval`` seconds, or at once when ``log_flush_lines``
are waiting, all waiting lines are inserted in one write. Every ``log_prune_every`` written lines
the agent's oldest lines beyond ``log_keep`` are deleted in the same transaction. If the
database falls behind by ``log_pending_max`` lines, the oldest waiting lines are dropped and a
system line says how many.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from datetime import datetime
from typing import Any

import trio
from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session

from vareon_runtime.bus import EventBus
from vareon_runtime.clock import isoformat, utcnow
from vareon_runtime.errors import StoreError
from vareon_runtime.store import Store

from .models import AgentLogRecord
from .schemas import AgentLogLine
from .settings import AgentSettings

__all__ = ["AgentOutput", "count_logs", "read_logs"]

log = logging.getLogger("vareon.myntrix.output")


def read_logs(agent_id: str, tail: int) -> Callable[[Session], list[AgentLogLine]]:
    """A store read returning the agent's last ``tail`` written lines, oldest first."""

    def read(session: Session) -> list[AgentLogLine]:
        rows = session.execute(
            select(AgentLogRecord.time, AgentLogRecord.stream, AgentLogRecord.line)
            .where(AgentLogRecord.agent_id == agent_id)
            .order_by(AgentLogRecord.id.desc())
            .limit(tail)
        ).all()
        return [AgentLogLine(time=t, stream=s, line=text) for t, s, text in reversed(rows)]

    return read


def count_logs(agent_id: str) -> Callable[[Session], int]:
    """A store read returning how many lines of the agent are kept."""

    def count(session: Session) -> int:
        query = select(func.count()).select_from(AgentLogRecord).where(AgentLogRecord.agent_id == agent_id)
        return session.scalar(query) or 0

    return count


class AgentOutput:
    """The output of one agent; run :meth:`flusher` in the agent actor's nursery."""

    def __init__(self, agent_id: str, *, store: Store, bus: EventBus, settings: AgentSettings) -> None:
        self.agent_id = agent_id
        self.store = store
        self.bus = bus
        self.settings = settings
        self._topic = f"agent.{agent_id}.log"
        self._ring: deque[tuple[datetime, str, str]] = deque(maxlen=settings.log_ring)
        self._pending: deque[dict[str, Any]] = deque()
        self._dropped = 0
        self._since_prune = 0
        self._ready = trio.Event()
        self._full = trio.Event()
        self._lock = trio.Lock()

    def add(self, stream: str, text: str) -> None:
        """Keep, publish and queue one line (never waits)."""
        now = utcnow()
        self._ring.append((now, stream, text))
        pending = self._pending
        if len(pending) >= self.settings.log_pending_max:
            pending.popleft()
            self._dropped += 1
        pending.append({"agent_id": self.agent_id, "time": now, "stream": stream, "line": text})
        self.bus.publish(self._topic, {"id": self.agent_id, "time": isoformat(now), "stream": stream, "line": text})
        self._ready.set()
        if len(pending) >= self.settings.log_flush_lines:
            self._full.set()

    async def tail(self, count: int) -> list[AgentLogLine]:
        """The last ``count`` lines, oldest first: from the ring buffer when it holds that many,
        else from the database (after writing what is waiting)."""
        if count <= len(self._ring):
            return [AgentLogLine(time=t, stream=s, line=text) for t, s, text in list(self._ring)[-count:]]
        await self.flush()
        return await self.store.read(read_logs(self.agent_id, count))

    async def flusher(self) -> None:
        """Write waiting lines in batches, forever."""
        while True:
            await self._ready.wait()
            with trio.move_on_after(self.settings.log_flush_interval):
                await self._full.wait()
            await self.flush()

    async def flush(self) -> None:
        """Write the waiting lines in one transaction, pruning the oldest every so often.

        Returns once every line added before the call is committed (or given up on): a flush
        that finds another one under way waits for it first.
        """
        async with self._lock:
            await self._flush()

    async def _flush(self) -> None:
        if not self._pending and not self._dropped:
            return
        rows = list(self._pending)
        self._pending.clear()
        self._ready = trio.Event()
        self._full = trio.Event()
        if self._dropped:
            note = f"{self._dropped} output lines were dropped: the database fell behind"
            rows.append({"agent_id": self.agent_id, "time": utcnow(), "stream": "system", "line": note})
            log.warning("agent %s: %s", self.agent_id, note)
            self._dropped = 0
        prune = self._since_prune + len(rows) >= self.settings.log_prune_every
        agent_id, keep = self.agent_id, self.settings.log_keep

        def write(session: Session) -> None:
            session.execute(insert(AgentLogRecord), rows)
            if prune:
                cutoff = session.scalar(
                    select(AgentLogRecord.id)
                    .where(AgentLogRecord.agent_id == agent_id)
                    .order_by(AgentLogRecord.id.desc())
                    .offset(keep)
                    .limit(1)
                )
                if cutoff is not None:
                    session.execute(
                        delete(AgentLogRecord).where(AgentLogRecord.agent_id == agent_id, AgentLogRecord.id <= cutoff)
                    )

        try:
            await self.store.write(write)
        except trio.Cancelled:
            # Cancelled before the writer took the write (the actor is stopping: its flusher is
            # cancelled, then on_stop flushes): the store dropped it, so the lines wait again.
            self._pending.extendleft(reversed(rows))
            self._ready.set()
            raise
        except StoreError as exc:
            log.warning("agent %s: %d output lines were not persisted: %s", self.agent_id, len(rows), exc)
            return
        self._since_prune = 0 if prune else self._since_prune + len(rows)
