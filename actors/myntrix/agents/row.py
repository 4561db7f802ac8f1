"""``AgentRow``: what an agent's actor writes to its row in ``agents`` (with the job of the
request in progress, in the same transaction), and the status events that follow the writes."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from actors.kit.jobs import Jobs, JobTicket
from vareon_runtime.bus import EventBus
from vareon_runtime.errors import StoreError
from vareon_runtime.store import Store

from .models import AgentRecord

__all__ = ["AgentRow"]

log = logging.getLogger("vareon.myntrix.agent")

HEALTH_STEP = 5
"""Points the health must move before it is written again (it is published at every sample)."""


class AgentRow:
    """An agent's row as its actor keeps it.

    Args:
        agent_id: the agent.
        store: where the row is.
        bus: where status changes are published (``agent.<id>.status``).
        jobs: where a request's job is published once written.
    """

    def __init__(self, agent_id: str, store: Store, bus: EventBus, jobs: Jobs) -> None:
        self.agent_id = agent_id
        self.dirty = False  # the last save failed: the state is to be written again
        self.saved_health = 0
        self._store = store
        self._bus = bus
        self._jobs = jobs
        self._topic = f"agent.{agent_id}.status"
        self._unpublished: list[dict[str, Any]] = []

    def changed(self, event: dict[str, Any]) -> None:
        """Note a status change; it is published by the next :meth:`save`, once written, so that
        whoever reacts to the event reads the same state back from the API."""
        self._unpublished.append(event)

    async def save(self, values: dict[str, Any], job: JobTicket | None = None) -> None:
        """Write the observed state (one UPDATE) and ``job`` as it stands, in one transaction;
        then publish the status changes noted since the last save, and the job if it was written.

        Raises:
            StoreError: the write failed (the changes are published all the same, and
                :attr:`dirty` says the state is to be written again).
        """
        agent_id = self.agent_id
        self.saved_health = values["health"]

        def save(session: Session) -> bool:
            session.execute(update(AgentRecord).where(AgentRecord.id == agent_id).values(**values))
            return job.apply(session) if job is not None else False

        try:
            wrote_job = await self._store.write(save)
        except BaseException:
            self.dirty = True
            raise
        else:
            self.dirty = False
            if job is not None and wrote_job:
                self._jobs.published(job)
        finally:
            # Published even if the write failed: the transition happened all the same.
            events, self._unpublished = self._unpublished, []
            for event in events:
                self._bus.publish(self._topic, event)

    async def save_health(self, health: int, *, actor: str) -> None:
        """Write ``health`` alone when it moved :data:`HEALTH_STEP` points since it was written
        (a failed write is tried again on a later sample)."""
        if abs(health - self.saved_health) < HEALTH_STEP:
            return
        previous, self.saved_health = self.saved_health, health
        agent_id = self.agent_id

        def save(session: Session) -> None:
            session.execute(update(AgentRecord).where(AgentRecord.id == agent_id).values(health=health))

        try:
            await self._store.write(save)
        except StoreError as exc:
            self.saved_health = previous  # written again on a later round
            log.warning("%s: health not persisted: %s", actor, exc)
