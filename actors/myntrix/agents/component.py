"""The agents module as a runtime component (entry point ``vareon.components: agents``).

:class:`AgentsModule` is the ``agents`` child of the root supervisor, a
:class:`~actors.kit.module.DomainModule`: it provides the :class:`~actors.myntrix.agents.Agents`
face. Starting, it runs the ``agents`` supervisor (one_for_one, no supervisor-wide restart
limit, each agent its own child ``agent/<uuid>``), stops whatever processes a crashed runtime
left behind (by pid *and* creation time, and by their owner mark), then starts an actor per
agent; each starts its process when its desired state is running. While it runs, it reaps the
processes that escaped an agent's group and came back to the runtime, its subreaper.

Stopping, it first asks every agent to stop its process, all at once (SIGTERM, the agent's stop
timeout, SIGKILL), so that twenty agents ignoring SIGTERM take one stop timeout rather than
twenty; then the supervisor stops the actors in reverse order. The desired states are kept, so
the agents come back with the runtime.
"""

from __future__ import annotations

import logging

import trio

from actors.kit.jobs import Jobs
from actors.kit.module import DomainModule, entity_supervisor
from drivers.subreaper import watch_adopted
from vareon_runtime.component import Component, RuntimeContext
from vareon_runtime.errors import VareonError
from vareon_runtime.registry import Registry
from vareon_runtime.supervisor import ChildSpec, ChildStatus

from ..config import SECTION, MyntrixConfig
from .actor import AgentServices
from .messages import ReleaseAgent
from .service import Agents
from .settings import AgentSettings

__all__ = ["AGENTS_NAME", "AgentsModule", "component"]

log = logging.getLogger("vareon.myntrix")

AGENTS_NAME = "agents"
"""The module's child name under the root supervisor, and so its registry name."""


class AgentsModule(DomainModule):
    """The agents module (see the module docstring).

    Args:
        services: what the module's agents share.
        registry: the runtime's (agent actors register as ``agent/<uuid>``).
    """

    def __init__(self, services: AgentServices, registry: Registry) -> None:
        timeout = services.settings.shutdown_timeout
        supervisor = entity_supervisor("agents", registry, services.bus, shutdown_timeout=timeout, rng=services.rng)
        self.processes = services.processes
        self.agents = Agents(services, supervisor)
        super().__init__(registry, supervisor, self.agents, shutdown_timeout=timeout)

    async def start_services(self) -> None:
        await self.nursery.start(watch_adopted)

    async def boot(self) -> None:
        await self.agents.boot()
        log.info("agents: %d agents, %d processes running", len(self.supervisor.which_children()), len(self.processes))

    async def drain(self) -> None:
        """Stop every agent's process concurrently (each: SIGTERM, its stop timeout, SIGKILL),
        keeping the desired states; processes that exit meanwhile are not restarted."""
        self.processes.closing = True
        running = [child.name for child in self.supervisor.which_children() if child.status is ChildStatus.RUNNING]
        if len(self.processes):
            log.info("agents: stopping %d agent processes", len(self.processes))

        async def release(name: str) -> None:
            try:
                await self.supervisor.ref(name).ask(ReleaseAgent(), timeout=self.shutdown_timeout)
            except VareonError as exc:
                # Its actor's on_stop stops the process anyway, after this.
                log.warning("agents: %s did not release its process: %s", name, exc)

        async with trio.open_nursery() as nursery:
            for name in running:
                nursery.start_soon(release, name)


def _build(ctx: RuntimeContext) -> ChildSpec:
    settings = AgentSettings(log_keep=ctx.config.section(MyntrixConfig).agent_log_lines)

    def factory() -> AgentsModule:
        return AgentsModule(AgentServices(ctx.store, ctx.bus, Jobs(ctx.store, ctx.bus), settings), ctx.registry)

    return ChildSpec(AGENTS_NAME, factory, shutdown=settings.shutdown_timeout)


component = Component(
    name=AGENTS_NAME, build=_build, order=10, config=SECTION, migrations="actors.myntrix.agents.migrations"
)
"""The ``agents`` component."""
