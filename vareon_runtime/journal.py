"""The journal: supervision facts worth keeping, written to the ``events`` table.

Crashes, give-ups and restarts published on ``status.actor`` are persisted so that a child that
failed while nobody watched is still visible afterwards (``/api/system/status`` reads them back).
"""

from __future__ import annotations

import logging

import trio
from sqlalchemy.orm import Session

from .bus import EventBus, Overflow
from .store import EventRecord
from .store import Store

__all__ = ["Journal"]

log = logging.getLogger("vareon.journal")

_KEPT = {"failed", "backoff", "starting", "stopped"}


class Journal:
    """Subscribes to ``status.actor`` and records every status change that carries a reason."""

    def __init__(self, bus: EventBus, store: Store) -> None:
        self.bus = bus
        self.store = store

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        with self.bus.subscribe("status.actor", queue_size=4096) as subscription:
            task_status.started()
            async for item in subscription:
                if isinstance(item, Overflow):
                    log.warning("journal fell behind and lost %d status events", item.dropped)
                    await self._record("journal", "overflow", f"lost {item.dropped} status events", None)
                    continue
                data = item.data
                if not isinstance(data, dict):
                    continue  # only supervisors' status dicts are journaled; others may share the topic
                if data.get("reason") and data.get("status") in _KEPT:
                    await self._record(
                        data["name"],
                        data["status"],
                        data["reason"],
                        {"supervisor": data["supervisor"], "restarts": data["restarts"]},
                    )

    async def _record(self, source: str, kind: str, message: str, details: dict | None) -> None:
        def insert(session: Session) -> None:
            session.add(EventRecord(source=source, kind=kind, message=message, details=details))

        await self.store.write(insert)
