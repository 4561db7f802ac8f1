"""Messages of the Myntrix actors.

To an agent's actor (``agent/<uuid>`` in the registry), from the :class:`Agents` face or anyone
holding its ref: :class:`StartAgent`, :class:`StopAgent`, :class:`RestartAgent` (each answers
the :class:`~actors.myntrix.schemas.Agent` after the change is persisted, or refuses with
``ConflictError`` / ``InvalidRequestError``), :class:`GetAgentState`, :class:`GetAgentLogs`,
:class:`ReleaseAgent` and :class:`RenameAgent`.

The agent's actor sends itself :class:`ProcessExited`, :class:`HeartbeatMissed` and
:class:`RestartDue` from its background tasks, so that every state change happens in its one
message loop. Each carries the ``generation`` of the process it is about; a message about an
earlier process (one a user already stopped or replaced) is ignored.

To the module (``myntrix`` in the registry): :class:`GetAgents`, :class:`GetJobs`,
:class:`GetMetricsSampler`.
To the host metrics sampler: :class:`GetSystemMetrics`.
"""

from __future__ import annotations

from pydantic import Field

from vareon_runtime.messages import Message

__all__ = [
    "GetAgentLogs",
    "GetAgentState",
    "GetAgents",
    "GetJobs",
    "GetMetricsSampler",
    "GetSystemMetrics",
    "HeartbeatMissed",
    "ProcessExited",
    "ReleaseAgent",
    "RenameAgent",
    "RestartAgent",
    "RestartDue",
    "StartAgent",
    "StopAgent",
]


class StartAgent(Message):
    """Start the agent's process; desired state becomes running. Refused if it runs."""


class StopAgent(Message):
    """Stop the process (SIGTERM, stop timeout, SIGKILL); desired state becomes stopped.

    Refused if the agent is already stopped.
    """


class RestartAgent(Message):
    """Stop the process if it runs, then start it; desired state becomes running."""


class ReleaseAgent(Message):
    """Stop the process but keep the desired state (before the agent is deleted or replaced)."""


class RenameAgent(Message):
    """The agent's name or type changed in the database; show the new ones."""

    name: str
    type: str


class GetAgentState(Message):
    """Answer the agent as it is now (:class:`~actors.myntrix.schemas.Agent`)."""


class GetAgentLogs(Message):
    """Answer the last ``tail`` captured lines, oldest first."""

    tail: int = Field(ge=1)


class ProcessExited(Message):
    """The process of ``generation`` exited with ``exit_code`` (negative: killed by that signal)."""

    generation: int
    exit_code: int


class HeartbeatMissed(Message):
    """The process of ``generation`` stopped heartbeating; ``reason`` says how."""

    generation: int
    reason: str


class RestartDue(Message):
    """The backoff before restarting the process after ``generation`` is over."""

    generation: int


class GetAgents(Message):
    """Answer the module's :class:`~actors.myntrix.agents.Agents` face."""


class GetMetricsSampler(Message):
    """Answer the ref of the module's host metrics sampler."""


class GetSystemMetrics(Message):
    """Answer the latest host sample and the history (:class:`~actors.myntrix.schemas.SystemMetrics`)."""


class GetJobs(Message):
    """Answer the module's :class:`~actors.myntrix.jobs.Jobs` face."""
