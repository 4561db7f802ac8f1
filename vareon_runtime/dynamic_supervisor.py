"""``DynamicSupervisor``: many short-lived children of one kind, started on demand.

OTP's ``simple_one_for_one`` supervisor (Elixir's ``DynamicSupervisor``): where a
:class:`~vareon_runtime.supervisor.Supervisor` keeps a few named, long-lived children alive, this
one runs thousands of temporary ones (the scheduler's task runs) at the cost of a trio task each:

- **starting is synchronous and cheap**: :meth:`DynamicSupervisor.start_child` spawns the
  child's ``run()`` and returns; there is no start handshake, no mailbox, no registry entry, no
  status event, so a burst of ten thousand children due at one instant starts in one sweep;
- **temporary children**: a child is never restarted. One that ends is forgotten; one that
  raises (a bug: children are expected to handle their own failures) is logged with its
  traceback and counted in :attr:`DynamicSupervisor.crashes`; its siblings and the supervisor
  carry on;
- **stopping**: stopping the supervisor (:meth:`DynamicSupervisor.stop`, or cancelling its
  ``run``) cancels every child at once, as they are independent, and waits up to ``shutdown``
  seconds for them. One still running then is logged as an error (it was cancelled and ends at
  its next checkpoint; trio cannot kill a task). A single child is stopped by its owner (the
  scheduler's runs have their own cancel, which records why), so there is no cancel scope per
  child to pay for;
- **visibility**: :meth:`which_children` lists the live children as
  :class:`~vareon_runtime.supervisor.ChildInfo` rows, as a ``Supervisor`` does.

A child is anything with ``async def run(self) -> None``; its cleanup (a final write) is its own
to shield. The supervisor itself is a :class:`~vareon_runtime.supervisor.Runnable`: a child of a
``Supervisor`` that gives it ``shutdown`` seconds or more.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import trio

from .clock import utcnow
from .errors import DuplicateChildError, SupervisorStoppedError
from .supervisor import ChildInfo, ChildStatus

__all__ = ["DynamicSupervisor", "Worker"]

log = logging.getLogger("vareon.supervisor")


class Worker(Protocol):
    """What a :class:`DynamicSupervisor` runs: one coroutine, no start handshake."""

    async def run(self) -> None: ...


@dataclass(eq=False, slots=True)
class _Live:
    worker: Worker
    started_at: datetime


class DynamicSupervisor:
    """Runs temporary children started on demand (see the module docstring).

    Args:
        name: used in logs and errors.
        shutdown: seconds the children get to end once the supervisor is stopped.
    """

    def __init__(self, name: str, *, shutdown: float) -> None:
        self.name = name
        self.shutdown = shutdown
        self._live: dict[str, _Live] = {}
        self._nursery: trio.Nursery | None = None
        self._idle = trio.Event()
        self._idle.set()
        self._stop = trio.Event()
        self._stopping = False
        self.started = 0  # children started so far
        self.crashes = 0  # children that raised
        self.last_error: str | None = None

    def __len__(self) -> int:
        return len(self._live)

    def __contains__(self, name: object) -> bool:
        return name in self._live

    # ---------------------------------------------------------------- running

    async def run(self, *, task_status: trio.TaskStatus[DynamicSupervisor] = trio.TASK_STATUS_IGNORED) -> None:
        """Supervise children until stopped or cancelled; then cancel them all and wait for them."""
        if self._stopping:
            raise SupervisorStoppedError(f"{self.name} has been stopped; make a new one")
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                task_status.started(self)
                try:
                    await self._stop.wait()
                finally:
                    self._stopping = True
                    nursery.cancel_scope.cancel()  # every child at once
                    with trio.CancelScope(shield=True) as scope:
                        scope.deadline = trio.current_time() + self.shutdown
                        await self._idle.wait()
                    if self._live:
                        log.error(
                            "%s: %d children did not stop within %gs; they end at their next checkpoint",
                            self.name, len(self._live), self.shutdown,
                        )  # fmt: skip
        finally:
            self._stopping = True
            self._nursery = None

    async def stop(self) -> None:
        """Stop every child and end :meth:`run` (also safe before it started)."""
        self._stopping = True
        self._stop.set()
        await self._idle.wait()

    # ---------------------------------------------------------------- children

    def start_child(self, name: str, worker: Worker) -> None:
        """Start ``worker`` as the child ``name``; returns at once (the child runs from the
        next scheduling round).

        Raises:
            DuplicateChildError: a live child has that name.
            SupervisorStoppedError: the supervisor is not running (not started, or stopping).
        """
        if self._nursery is None or self._stopping:
            raise SupervisorStoppedError(f"{self.name} is not running; {name} was not started")
        if name in self._live:
            raise DuplicateChildError(f"{self.name} already has a child named {name!r}")
        live = _Live(worker, utcnow())
        self._live[name] = live
        self._idle = trio.Event() if self._idle.is_set() else self._idle
        self.started += 1
        self._nursery.start_soon(self._supervise, name, live, name=f"{self.name}/{name}")

    def which_children(self) -> list[ChildInfo]:
        """The live children, oldest first."""
        return [
            ChildInfo(name, type(live.worker).__name__, ChildStatus.RUNNING, 0, None, live.started_at)
            for name, live in self._live.items()
        ]

    async def _supervise(self, name: str, live: _Live) -> None:
        try:
            await live.worker.run()
        except Exception as exc:
            self.crashes += 1
            self.last_error = f"{name}: {type(exc).__name__}: {exc}"
            log.error("%s: child %s crashed: %s: %s", self.name, name, type(exc).__name__, exc, exc_info=exc)
        finally:
            del self._live[name]
            if not self._live:
                self._idle.set()
