"""Helpers of the agents' tests: the module under a root supervisor on a real store, agents that
are real Python processes, and the invariant "running if and only if a live process"."""

from __future__ import annotations

import random
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import trio

from actors.kit import Jobs
from actors.myntrix.agents import Agent, Agents, AgentServices, AgentSettings, AgentsModule, AgentStatus
from vareon_runtime.bus import EventBus, Overflow, Subscription
from vareon_runtime.registry import Registry
from vareon_runtime.store import Store
from vareon_runtime.supervisor import ChildSpec, Supervisor

TIMEOUT = 30.0

# Fast enough for tests, same code paths as the defaults.
FAST = AgentSettings(
    log_flush_interval=0.02,
    health_interval=0.1,
    log_keep=50,
    log_prune_every=20,
    shutdown_timeout=20.0,
)


@dataclass
class Module:
    """One running Myntrix module (what ``vareon run`` starts), and how to stop it."""

    agents: Agents
    root: Supervisor
    stopped: trio.Event

    async def stop(self) -> None:
        await self.root.stop()
        with trio.fail_after(TIMEOUT):
            await self.stopped.wait()


@dataclass
class AgentKit:
    """The kernel services the module runs on, and helpers to make agents of Python scripts."""

    tmp_path: Path
    store: Store
    bus: EventBus
    registry: Registry
    nursery: trio.Nursery
    settings: AgentSettings = FAST
    tokens: dict[str, str] = field(default_factory=dict)

    async def start_module(self) -> Module:
        """Start the module as a runtime would (a runtime's registry is its own: a fresh one)."""
        self.registry = Registry()
        store, bus, registry, settings = self.store, self.bus, self.registry, self.settings

        def factory() -> AgentsModule:
            return AgentsModule(AgentServices(store, bus, Jobs(store, bus), settings, rng=random.Random(4)), registry)

        root = Supervisor("root", [ChildSpec("agents", factory, shutdown=settings.shutdown_timeout)], registry=registry, bus=bus)
        stopped = trio.Event()

        async def run(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
            try:
                await root.run(task_status=task_status)
            finally:
                stopped.set()

        with trio.fail_after(TIMEOUT):
            await self.nursery.start(run)
            return Module(registry.face(Agents), root, stopped)

    def config(self, code: str, *args: str, **overrides: Any) -> dict[str, Any]:
        """An agent configuration running ``code`` as a script; its first argument is a token
        that tells this agent's processes apart from every other process on the host."""
        token = f"agent-{uuid.uuid4().hex}"
        script = self.tmp_path / f"{token}.py"
        script.write_text(code)
        config = {"argv": [sys.executable, str(script), token, *args], "stopTimeout": 2.0, **overrides}
        return config

    async def create(self, agents: Agents, code: str, *args: str, name: str = "worker", **overrides: Any) -> Agent:
        config = self.config(code, *args, **overrides)
        agent = await agents.create({"name": name, "configuration": config})
        self.tokens[agent.id] = config["argv"][2]
        return agent

    def processes_of(self, agent_id: str) -> set[int]:
        """Live (non-zombie) processes started with this agent's token on their command line,
        leaving out their own children (a fork has its parent's command line until it execs)."""
        token = self.tokens[agent_id]
        found: dict[int, int] = {}
        for proc in psutil.process_iter(["cmdline", "status", "ppid"]):
            try:
                if proc.info["status"] != psutil.STATUS_ZOMBIE and token in (proc.info["cmdline"] or []):
                    found[proc.pid] = proc.info["ppid"]
            except psutil.Error:
                continue
        return {pid for pid, parent in found.items() if parent not in found}

    async def assert_consistent(self, agents: Agents, agent_id: str) -> Agent:
        """The invariant: the API says running if and only if the agent's process is alive,
        and the row agrees with the actor."""
        state = await agents.state(agent_id)
        row = await agents.get(agent_id)
        live = self.processes_of(agent_id)
        if state.status is AgentStatus.RUNNING:
            # A process caught in the middle of its exec shows no command line yet.
            with trio.move_on_after(1):
                while state.pid not in live:
                    await trio.sleep(0.01)
                    live = self.processes_of(agent_id)
            assert state.pid is not None and live == {state.pid}, (state, live, _describe(state.pid))
        else:
            assert state.pid is None and not live, (state, live)
        assert (row.status, row.pid, row.restarts, row.desired_state) == (
            state.status,
            state.pid,
            state.restarts,
            state.desired_state,
        ), (row, state)
        return state


async def until(subscription: Subscription, predicate: Callable[[Any], bool], *, timeout: float = 10.0) -> Any:
    """The data of the first event on ``subscription`` that satisfies ``predicate``."""
    with trio.fail_after(timeout):
        while True:
            item = await subscription.receive()
            if not isinstance(item, Overflow) and predicate(item.data):
                return item.data


def gone(pid: int) -> bool:
    """No such process, or only a zombie left for an init that does not reap (containers)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _describe(pid: int) -> object:
    try:
        proc = psutil.Process(pid)
        return proc.status(), proc.cmdline()
    except psutil.Error as exc:
        return exc
