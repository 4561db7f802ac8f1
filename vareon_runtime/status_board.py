"""``StatusBoard``: every supervised child's last status, as the supervisors announced it.

Each :class:`~vareon_runtime.supervisor.Supervisor` with a bus publishes every status change of
its children on ``status.actor`` (the journal keeps the ones with a reason). The board folds them
into a table of ``(supervisor, child) -> (kind, status)`` and a count of restarts per supervisor
and kind, so the whole tree (the root's modules, the agents', devices' and scheduler's actors)
can be counted by state in one pass over a dictionary, without reaching into any supervisor.

Its subscription is made when the board is made: made before the root supervisor starts (a
component's ``build``), it sees every child from its first ``starting``. The board's
:meth:`run` takes the events as they come; status changes are rare (a start, a crash, a stop),
so this costs nothing in steady state. A child deleted by its supervisor (an agent removed)
leaves no event after its ``stopped``: its entry goes once its name has left the registry (an
actor's) and it is stopped. Events lost to an overflow are counted in :attr:`StatusBoard.lost`; the entries they
would have changed keep their older status until the next change.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass

import trio

from .bus import Event, EventBus, Overflow
from .registry import Registry

__all__ = ["STATUS_TOPIC", "ChildState", "StatusBoard"]

log = logging.getLogger("vareon.status")

STATUS_TOPIC = "status.actor"
"""Where supervisors announce their children's status changes."""


@dataclass(slots=True)
class ChildState:
    """One child's last announced status."""

    supervisor: str
    name: str
    kind: str
    status: str
    restarts: int
    actor: bool
    """Whether the child was registered (an actor) when last announced."""


class StatusBoard:
    """The last status of every child announced on ``status.actor`` (see the module docstring).

    Args:
        bus: the runtime's bus; subscribed at once.
        registry: the runtime's registry, to drop the entries of deleted actors.
        queue_size: events held while :meth:`run` is not taking them (boot announces a few per
            child).
    """

    def __init__(self, bus: EventBus, registry: Registry, *, queue_size: int = 4096) -> None:
        self._registry = registry
        self._subscription = bus.subscribe(STATUS_TOPIC, queue_size=queue_size)
        self._children: dict[tuple[str, str], ChildState] = {}
        self._restarts: Counter[tuple[str, str]] = Counter()
        self.lost = 0
        """Status events lost because the board fell behind (an overflow of its queue)."""

    async def run(self, *, task_status: trio.TaskStatus[StatusBoard] = trio.TASK_STATUS_IGNORED) -> None:
        """Take status events until cancelled, provided in the registry meanwhile
        (``registry.face(StatusBoard)``). A supervisor may run it again after a crash: the
        subscription stays."""
        self.take_pending()
        self._registry.provide(self)
        try:
            task_status.started(self)
            while True:
                self.note(await self._subscription.receive())
        finally:
            self._registry.withdraw(self)

    def take_pending(self) -> None:
        """Fold every event queued now, without waiting."""
        while True:
            try:
                item = self._subscription.receive_nowait()
            except trio.WouldBlock:
                return
            self.note(item)

    def note(self, item: Event | Overflow) -> None:
        """Fold one status event (or an overflow's count) into the board."""
        if isinstance(item, Overflow):
            self.lost += item.dropped
            log.warning("the status board fell behind and lost %d status events", item.dropped)
            return
        data = item.data
        if not isinstance(data, dict) or "supervisor" not in data or "name" not in data:
            return  # someone else's event on the topic: only supervisors' dicts are children
        supervisor, name = str(data["supervisor"]), str(data["name"])
        kind, status = str(data.get("kind") or ""), str(data.get("status") or "")
        restarts = data.get("restarts")
        restarts = restarts if isinstance(restarts, int) else 0
        key = (supervisor, name)
        held = self._children.get(key)
        if held is None:
            # Its restarts so far are not counted: made before anything starts, the board sees
            # every child at 0; one seen later with more is a deleted child's late event.
            self._children[key] = ChildState(supervisor, name, kind, status, restarts, name in self._registry)
            return
        if restarts > held.restarts:
            self._restarts[(supervisor, kind)] += restarts - held.restarts
        held.kind, held.status, held.restarts = kind or held.kind, status, restarts
        held.actor = held.actor or name in self._registry

    def children(self) -> list[ChildState]:
        """Every child known, without those deleted since: an actor whose name left the
        registry, or a child stopped and not registered (the late events of a deleted actor,
        taken after it was dropped)."""
        registry = self._registry
        gone = [
            key
            for key, child in self._children.items()
            if child.name not in registry and (child.actor or child.status == "stopped")
        ]
        for key in gone:
            del self._children[key]
        return list(self._children.values())

    def by_state(self) -> Counter[tuple[str, str, str]]:
        """How many children are in each ``(supervisor, kind, status)``."""
        return Counter((child.supervisor, child.kind, child.status) for child in self.children())

    def restarts(self) -> dict[tuple[str, str], int]:
        """Restarts announced since the board was made, by ``(supervisor, kind)``; they only grow
        (a deleted child's restarts stay counted)."""
        return dict(self._restarts)
