"""An agent's process as its actor keeps it: :class:`AgentProcess` (one process and the tasks
that watch it), :class:`ProcessTable` (every agent's live process, for the module's stop), and
:func:`agent_env` (what the process inherits)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field

import trio

from drivers.process import OSProcess

from .heartbeat import HeartbeatWatch
from .schemas import AgentConfig

__all__ = ["AgentProcess", "ProcessTable", "agent_env", "owner_mark"]


def owner_mark(agent_id: str) -> str:
    """The owner mark of an agent's processes (see :mod:`drivers.identity`)."""
    return f"agent/{agent_id}"


def agent_env(config: AgentConfig) -> dict[str, str]:
    """The environment of an agent's process.

    The runtime's own, without its ``VAREON_*`` variables (they hold its secrets and settings),
    with ``PYTHONUNBUFFERED=1`` so a Python agent's output is not held back in a pipe buffer,
    then the agent's ``env`` on top.
    """
    env = {key: value for key, value in os.environ.items() if not key.upper().startswith("VAREON_")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(config.env)
    return env


class ProcessTable:
    """The live processes of every agent of one module.

    Once ``closing`` (the module is stopping), an agent whose process exits does not restart it.
    """

    def __init__(self) -> None:
        self._live: set[OSProcess] = set()
        self.closing = False

    def add(self, proc: OSProcess) -> None:
        self._live.add(proc)

    def discard(self, proc: OSProcess) -> None:
        self._live.discard(proc)

    def __len__(self) -> int:
        return len(self._live)

    def __iter__(self) -> Iterator[OSProcess]:
        return iter(list(self._live))


@dataclass(eq=False)
class AgentProcess:
    """One process of an agent and the tasks that watch it (``generation`` tells it from the
    agent's earlier and later processes)."""

    proc: OSProcess
    generation: int
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    done: trio.Event = field(default_factory=trio.Event)
    heartbeat: HeartbeatWatch | None = None
    last_stderr: str | None = None
