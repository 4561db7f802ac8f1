"""The Myntrix module as a runtime component (entry point ``vareon.components: myntrix``).

:class:`Myntrix` is the ``myntrix`` child of the root supervisor. It is an actor, so the root
supervisor registers it in the registry as ``myntrix``: that is how the web front reaches the
domain without the kernel knowing about it (``RuntimeContext`` has no slot for domain services,
and a module-level accessor would be global state outliving the runtime). Asked
:class:`~actors.myntrix.messages.GetAgents`, it answers the :class:`Agents` face (see
:func:`agents_of`); :class:`~actors.myntrix.messages.GetJobs`, the :class:`Jobs` face
(:func:`jobs_of`).

Starting, it runs the host metrics sampler (:class:`~actors.myntrix.sampler.MetricsSampler`,
reached with :func:`sampler_of`), then the ``agents`` supervisor (one_for_one, no supervisor-wide restart limit, each
agent its own child ``agent/<uuid>``), stops whatever processes a crashed runtime left behind
(by pid *and* creation time), then starts an actor per agent; each starts its process when its
desired state is running.

Stopping, it first asks every agent to stop its process, all at once (SIGTERM, the agent's stop
timeout, SIGKILL), so that twenty agents ignoring SIGTERM take one stop timeout rather than
twenty; then the supervisor stops the actors in reverse order. The desired states are kept, so
the agents come back with the runtime.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping
from pathlib import Path

import trio

from drivers.metrics import SystemProbe
from vareon_runtime.actor import Actor, ActorRef, handles
from vareon_runtime.bus import EventBus
from vareon_runtime.component import Component, RuntimeContext
from vareon_runtime.registry import Registry
from vareon_runtime.store import Store
from vareon_runtime.errors import VareonError
from vareon_runtime.supervisor import Backoff, ChildSpec, ChildStatus, Supervisor

from .agent import ProcessTable
from .agents import Agents
from .jobs import Jobs
from .messages import GetAgents, GetJobs, GetMetricsSampler, ReleaseAgent
from .sampler import MetricsSampler
from .settings import MyntrixSettings

__all__ = ["MYNTRIX_NAME", "MYNTRIX_ORDER", "Myntrix", "agents_of", "jobs_of", "myntrix_component", "sampler_of"]

log = logging.getLogger("vareon.myntrix")

MYNTRIX_NAME = "myntrix"
"""The module's child name under the root supervisor, and so its registry name."""

MYNTRIX_ORDER = 10
"""Domains start early (the web front, 1000, starts last and stops first)."""


class Myntrix(Actor):
    """The Myntrix module: the agents supervisor, the boot-time reaper, the :class:`Agents` face.

    Args:
        store, bus, registry: the runtime's (agent actors register as ``agent/<uuid>``).
        settings: the module's tunables.
        rng: randomness for backoff jitter (tests pass a seeded one).
        metrics_path: whose file system the host metrics report (the data directory; the
            current directory when omitted).
        probe, environ: the host metrics' source and environment (psutil and ``os.environ``
            unless a test passes others).
    """

    def __init__(
        self,
        store: Store,
        bus: EventBus,
        registry: Registry,
        *,
        settings: MyntrixSettings | None = None,
        rng: random.Random | None = None,
        metrics_path: Path | None = None,
        probe: SystemProbe | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__()
        self.settings = settings or MyntrixSettings()
        self.sampler = MetricsSampler(
            metrics_path if metrics_path is not None else Path.cwd(),
            settings=self.settings,
            probe=probe,
            environ=environ,
        )
        self.sampler_ref: ActorRef | None = None
        self.processes = ProcessTable()
        self.registry = registry
        self.supervisor = Supervisor(
            "agents",
            max_restarts=None,  # agents are user-made: each carries its own limit
            registry=registry,
            bus=bus,
            backoff=Backoff(0.1, 5.0),
            shutdown_timeout=self.settings.shutdown_timeout,
            rng=rng,
        )
        self.jobs = Jobs(store, bus)
        self.agents = Agents(
            store, self.supervisor, bus, settings=self.settings, processes=self.processes, rng=rng, jobs=self.jobs
        )

    async def on_start(self) -> None:
        self.sampler_ref = await self.nursery.start(self.sampler.run)
        await self.nursery.start(self._run_agents)
        await self.agents.boot()
        log.info("myntrix: %d agents, %d processes running", len(self.supervisor.which_children()), len(self.processes))

    @handles(GetAgents)
    async def get_agents(self, msg: GetAgents) -> Agents:
        return self.agents

    @handles(GetJobs)
    async def get_jobs(self, msg: GetJobs) -> Jobs:
        return self.jobs

    @handles(GetMetricsSampler)
    async def get_sampler(self, msg: GetMetricsSampler) -> ActorRef:
        assert self.sampler_ref is not None, "the sampler starts before the module answers"
        return self.sampler_ref

    async def _run_agents(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the agents supervisor, shielded, until this actor is cancelled; then stop every
        agent's process at once, and only then let the supervisor stop the actors."""
        supervisor = self.supervisor

        async def supervise(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
            # Shielded: the supervisor is stopped below, after the processes, not by the
            # cancellation racing that. It bounds its own shutdown.
            with trio.CancelScope(shield=True):
                await supervisor.run(task_status=task_status)

        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(supervise)
                task_status.started()
                try:
                    await trio.sleep_forever()
                finally:
                    with trio.CancelScope(shield=True) as scope:
                        scope.deadline = trio.current_time() + self.settings.shutdown_timeout
                        await self._release_all()
                        await supervisor.stop()
        finally:
            # The next incarnation registers the same names.
            for child in supervisor.which_children():
                if child.name in self.registry:
                    self.registry.unregister(child.name)

    async def _release_all(self) -> None:
        """Stop every agent's process concurrently (each: SIGTERM, its stop timeout, SIGKILL),
        keeping the desired states; processes that exit meanwhile are not restarted."""
        self.processes.closing = True
        running = [child.name for child in self.supervisor.which_children() if child.status is ChildStatus.RUNNING]
        if len(self.processes):
            log.info("myntrix: stopping %d agent processes", len(self.processes))

        async def release(name: str) -> None:
            try:
                await self.supervisor.ref(name).ask(ReleaseAgent(), timeout=self.settings.shutdown_timeout)
            except VareonError as exc:
                # Its actor's on_stop stops the process anyway, after this.
                log.warning("myntrix: %s did not release its process: %s", name, exc)

        async with trio.open_nursery() as nursery:
            for name in running:
                nursery.start_soon(release, name)


async def agents_of(registry: Registry, *, timeout: float = 5.0) -> Agents:
    """The :class:`Agents` face of the runtime whose registry this is.

    Raises:
        NotRegisteredError: the Myntrix module is not running (not installed, or disabled).
    """
    agents: Agents = await registry.lookup(MYNTRIX_NAME).ask(GetAgents(), timeout=timeout)
    return agents


async def jobs_of(registry: Registry, *, timeout: float = 5.0) -> Jobs:
    """The :class:`Jobs` face of the runtime whose registry this is.

    Raises:
        NotRegisteredError: the Myntrix module is not running (not installed, or disabled).
    """
    jobs: Jobs = await registry.lookup(MYNTRIX_NAME).ask(GetJobs(), timeout=timeout)
    return jobs


async def sampler_of(registry: Registry, *, timeout: float = 5.0) -> ActorRef:
    """The host metrics sampler of the runtime whose registry this is.

    Raises:
        NotRegisteredError: the Myntrix module is not running (not installed, or disabled).
    """
    ref: ActorRef = await registry.lookup(MYNTRIX_NAME).ask(GetMetricsSampler(), timeout=timeout)
    return ref


def myntrix_component(ctx: RuntimeContext) -> Component:
    """The ``myntrix`` child of the root supervisor."""
    configured = ctx.config.myntrix
    settings = MyntrixSettings(
        metrics_interval=configured.metrics_interval,
        metrics_history=configured.metrics_history,
        log_keep=configured.agent_log_lines,
    )
    data_dir = ctx.config.data_dir_path

    def factory() -> Myntrix:
        return Myntrix(ctx.store, ctx.bus, ctx.registry, settings=settings, metrics_path=data_dir)

    return Component(
        spec=ChildSpec(MYNTRIX_NAME, factory, shutdown=settings.shutdown_timeout),
        order=MYNTRIX_ORDER,
    )
