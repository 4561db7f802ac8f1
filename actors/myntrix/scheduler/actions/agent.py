"""The ``agent`` task action: ``start``, ``stop`` or ``restart`` of an agent through the agents'
face (:class:`actors.myntrix.agents.Agents`).

Like ``supervisorctl``, which prints ``ERROR (already started)`` but exits 0, starting a running
agent or stopping a stopped one succeeds, saying so in the log: the agent is in the state the task
asked for.
"""

from __future__ import annotations

import uuid
from typing import Literal

from pydantic import BaseModel, Field, field_validator

from vareon_runtime.errors import ConflictError, NotRegisteredError, ServiceError, VareonError

from ...agents.schemas import AgentStatus
from ...agents.service import Agents
from .action import ActionContext, ActionOutcome, ActionParameters, BaseAction

__all__ = ["AgentAction", "AgentParameters"]


class AgentParameters(ActionParameters):
    """``agent``: start, stop or restart one agent."""

    agent_id: str = Field(description="The agent's id (a UUID).")
    operation: Literal["start", "stop", "restart"] = Field(description="start, stop or restart.")

    @field_validator("agent_id")
    @classmethod
    def _uuid(cls, value: str) -> str:
        try:
            return str(uuid.UUID(value))
        except ValueError:
            raise ValueError(f"must be an agent id (a UUID), not {value!r}") from None


class AgentAction(BaseAction):
    """Start, stop or restart an agent through its actor (see the module docstring); nothing to
    check before it runs (whether the agent exists is known when the task runs)."""

    kind = "agent"
    parameters = AgentParameters

    async def run(self, params: BaseModel, ctx: ActionContext) -> ActionOutcome:
        """Ask the agents face; ok when the agent is in the asked state afterwards."""
        assert isinstance(params, AgentParameters)
        operation, agent_id = params.operation, params.agent_id
        try:
            agents = ctx.registry.face(Agents)
        except NotRegisteredError:
            return ctx.fail(f"the Myntrix module is not running, so agent {agent_id} cannot {operation}")
        ctx.log(f"agent {agent_id}: {operation}")
        try:
            agent = await getattr(agents, operation)(agent_id)
        except ConflictError as exc:
            # Already running (start) or stopped (stop): done, as supervisorctl counts it, when
            # the agent is in the state asked for; any other conflict is a failure.
            wanted = {"start": AgentStatus.RUNNING, "stop": AgentStatus.STOPPED}.get(operation)
            try:
                current = await agents.get(agent_id)
            except VareonError:
                current = None
            if current is not None and current.status is wanted:
                ctx.log(f"agent {agent_id}: nothing to do, {exc.message}")
                return ActionOutcome(ok=True)
            return ctx.fail(f"agent {agent_id} could not {operation}: {exc.message}")
        except ServiceError as exc:
            return ctx.fail(f"agent {agent_id} could not {operation}: {exc.message}")
        except VareonError as exc:
            return ctx.fail(f"agent {agent_id} could not {operation}: {type(exc).__name__}: {exc}")
        pid = f" (pid {agent.pid})" if agent.pid is not None else ""
        ctx.log(f"agent {agent_id} ({agent.name}) is {agent.status.value}{pid}")
        return ActionOutcome(ok=True)
