"""Messages of the agents' actors.

To an agent's actor (``agent/<uuid>`` in the registry), from the :class:`Agents` face or anyone
holding its ref: :class:`StartAgent`, :class:`StopAgent`, :class:`RestartAgent` (each answers
the :class:`~actors.myntrix.agents.schemas.Agent` after the change is persisted, with the
request's job written in the same transaction, or refuses with ``ConflictError`` /
``InvalidRequestError``), :class:`GetAgentState`, :class:`GetAgentLogs`, :class:`ReleaseAgent`
and :class:`RenameAgent`.

The agent's actor sends itself :class:`ProcessExited`, :class:`HeartbeatMissed` and
:class:`RestartDue` from its background tasks, so that every state change happens in its one
message loop. Each carries the ``generation`` of the process it is about; a message about an
earlier process (one a user already stopped or replaced) is ignored.
"""

from __future__ import annotations

from pydantic import ConfigDict, Field

from actors.kit.jobs import JobTicket
from vareon_runtime.messages import Message

__all__ = [
    "GetAgentLogs",
    "GetAgentState",
    "HeartbeatMissed",
    "ProcessExited",
    "ReleaseAgent",
    "RenameAgent",
    "RestartAgent",
    "RestartDue",
    "StartAgent",
    "StopAgent",
]


class _Lifecycle(Message):
    """A request that changes whether the process runs, with its job (written by the actor)."""

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    job: JobTicket | None = None


class StartAgent(_Lifecycle):
    """Start the agent's process; desired state becomes running. Refused if it runs."""


class StopAgent(_Lifecycle):
    """Stop the process (SIGTERM, stop timeout, SIGKILL); desired state becomes stopped.

    Refused if the agent is already stopped.
    """


class RestartAgent(_Lifecycle):
    """Stop the process if it runs, then start it; desired state becomes running."""


class ReleaseAgent(Message):
    """Stop the process but keep the desired state (before the agent is deleted or replaced)."""


class RenameAgent(Message):
    """The agent's name or type changed in the database; show the new ones."""

    name: str
    type: str


class GetAgentState(Message):
    """Answer the agent as it is now (:class:`~actors.myntrix.agents.schemas.Agent`)."""


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
