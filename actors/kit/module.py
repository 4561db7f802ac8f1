"""``DomainModule``: a domain as a child of the root supervisor.

Every domain's module is the same actor with different parts, so each domain writes only its
parts:

1. :meth:`DomainModule.start_services`: what must run before any entity (a recorder, a feed);
2. the domain's own :class:`~vareon_runtime.supervisor.Supervisor` (its entities' actors, its
   runs' dynamic supervisor) runs in the module's nursery; once started it is shielded, so that
   stopping can first :meth:`DomainModule.drain` (stop every agent's process at once, cancel every
   run) and only then stop the actors, in reverse order. While it starts it is not shielded: a
   stop that arrives during boot reaches it directly instead of hanging;
3. :meth:`DomainModule.boot`: start an actor per entity, recover what a crash left;
4. the module's *face* (``Agents``, ``Devices``, ``Tasks``) is provided in the registry
   (:meth:`~vareon_runtime.registry.Registry.provide`) once all that stands, and withdrawn the
   moment the module starts stopping, so a request finds the face with a dictionary lookup, or
   a 503 saying the module is not running, never a half-stopped module.

Children names (``agent/<uuid>``) are unregistered when the supervisor ends, so the next
incarnation of the module registers them again.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable

import trio

from vareon_runtime.actor import Actor
from vareon_runtime.bus import EventBus
from vareon_runtime.registry import Registry
from vareon_runtime.supervisor import Backoff, Supervisor

__all__ = ["DomainModule", "ServiceModule", "entity_supervisor"]

log = logging.getLogger("vareon.kit.module")


def entity_supervisor(
    name: str, registry: Registry, bus: EventBus, *, shutdown_timeout: float, rng: random.Random | None = None
) -> Supervisor:
    """The supervisor of a domain's entities' actors: ``one_for_one``, with no supervisor-wide
    restart limit (the entities are users': each actor carries its own limit, see
    :class:`~actors.kit.resources.EntityActors`), registering each child by name, restarting
    after a short backoff."""
    return Supervisor(
        name,
        max_restarts=None,
        registry=registry,
        bus=bus,
        backoff=Backoff(0.1, 5.0),
        shutdown_timeout=shutdown_timeout,
        rng=rng,
    )


class DomainModule(Actor):
    """A domain's module (see the module docstring).

    Args:
        registry: the runtime's registry (the face is provided there).
        supervisor: the domain's supervisor.
        face: what the module offers the rest of the runtime; None when it can only be made in
            :meth:`boot` (set ``self.face`` there).
        shutdown_timeout: seconds :meth:`drain` and the supervisor's stop may take together.
    """

    def __init__(
        self, registry: Registry, supervisor: Supervisor, face: object | None, *, shutdown_timeout: float
    ) -> None:
        super().__init__()
        self.registry = registry
        self.supervisor = supervisor
        self.face = face
        self.shutdown_timeout = shutdown_timeout

    # ------------------------------------------------------------------ the domain's parts

    async def start_services(self) -> None:
        """Start what runs before the entities (``self.nursery.start(...)``)."""

    async def boot(self) -> None:
        """Bring the entities back once the supervisor runs."""

    async def drain(self) -> None:
        """Stop the work in flight before the actors are stopped (shielded, within the budget)."""

    # ------------------------------------------------------------------ the kit's part

    async def on_start(self) -> None:
        await self.start_services()
        await self.nursery.start(self._supervise)
        await self.boot()
        assert self.face is not None, f"{type(self).__name__} makes its face by the end of boot()"
        self.registry.provide(self.face)

    async def on_stop(self) -> None:
        if self.face is not None:
            self.registry.withdraw(self.face)

    async def _supervise(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the supervisor until cancelled; then drain and stop it (see the module docstring)."""
        supervisor = self.supervisor
        shield = trio.CancelScope()

        async def supervise(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
            with shield:
                await supervisor.run(task_status=task_status)

        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(supervise)
                shield.shield = True
                task_status.started()
                try:
                    await trio.sleep_forever()
                finally:
                    if self.face is not None:
                        self.registry.withdraw(self.face)
                    with trio.CancelScope(shield=True) as scope:
                        scope.deadline = trio.current_time() + self.shutdown_timeout
                        try:
                            await self.drain()
                        finally:
                            await supervisor.stop()  # also when draining took the whole budget
                    shield.shield = False  # a supervisor that overruns it is cancelled
        finally:
            # The next incarnation registers the same names.
            for child in supervisor.which_children():
                if child.name in self.registry:
                    self.registry.unregister(child.name)


class ServiceModule(Actor):
    """A module without entities: it offers ``face`` while it runs (the jobs list, the host's
    metrics).

    Args:
        registry: the runtime's registry.
        face: what it offers.
        prepare: awaited before the face is offered (the first sample).
        work: the face's background work, run for as long as the module runs.
    """

    def __init__(
        self,
        registry: Registry,
        face: object,
        *,
        prepare: Callable[[], Awaitable[object]] | None = None,
        work: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        super().__init__()
        self.registry = registry
        self.face = face
        self._prepare = prepare
        self._work = work

    async def on_start(self) -> None:
        if self._prepare is not None:
            await self._prepare()
        if self._work is not None:
            self.nursery.start_soon(self._work)
        self.registry.provide(self.face)

    async def on_stop(self) -> None:
        self.registry.withdraw(self.face)
