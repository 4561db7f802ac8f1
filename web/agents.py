"""Myntrix agents over HTTP (seeds 001, 003): agents and their lifecycle.

Every handler reaches the domain through its face (:class:`~actors.myntrix.agents.Agents`) and
lets it refuse: 404 for an unknown id, 409 for a start of a running agent or a stop of a stopped
one, 422 for a configuration that cannot run, with the reason. Bodies go out with the seeds'
camelCase names. Lists take `?limit=` and `?offset=`, answer a JSON array and put the total in
`X-Total-Count`.

Admins create, change and delete agents (they decide what runs on the host); operators start,
stop and restart them; viewers read.
"""

from __future__ import annotations

from pydantic import BaseModel, Field
from quart import Blueprint
from quart_schema import validate_querystring, validate_response

from actors.myntrix.agents import Agent, AgentCreate, AgentLogLine, Agents, AgentStatus, AgentUpdate
from vareon_runtime.auth import Role

from .kit import PageQuery, ResourceDocs, action_routes, face, resource_routes
from .permissions import requires

__all__ = ["AgentListQuery", "AgentLogsQuery", "blueprint"]

blueprint = Blueprint("agents", __name__)


class AgentListQuery(PageQuery):
    """`GET /api/myntrix/agents` query."""

    status: AgentStatus | None = Field(None, description="Only agents in this status.")


class AgentLogsQuery(BaseModel):
    """`GET /api/myntrix/agents/{id}/logs` query."""

    tail: int = Field(100, ge=1, le=10_000, description="The last this many lines, oldest first.")


resource_routes(
    blueprint,
    "/api/myntrix/agents",
    Agents,
    item=Agent,
    query=AgentListQuery,
    create=AgentCreate,
    update=AgentUpdate,
    read=Role.VIEWER,
    write=Role.ADMIN,
    docs=ResourceDocs(
        list="A page of agents, oldest first; the total in `X-Total-Count`.",
        create="Add an agent, stopped. 422 when its program cannot run here (the reason in details).",
        get="One agent.",
        update="Change the fields given; a new configuration restarts a running process with it.",
        delete="Stop the agent's process and remove the agent and its logs.",
    ),
)


action_routes(
    blueprint,
    "/api/myntrix/agents",
    Agents,
    {
        "start": "Start the agent's process and keep it running. 409 when it already runs.",
        "stop": "Stop the agent's process (SIGTERM, its stop timeout, SIGKILL). 409 when it is stopped.",
        "restart": "Stop the agent's process if it runs, then start it.",
    },
    item=Agent,
    role=Role.OPERATOR,
)


@blueprint.get("/api/myntrix/agents/<agent_id>/logs")
@requires(Role.VIEWER)
@validate_querystring(AgentLogsQuery)
@validate_response(list[AgentLogLine])
async def agent_logs(agent_id: str, query_args: AgentLogsQuery) -> list[AgentLogLine]:
    """The agent's last `tail` output lines, oldest first."""
    return await face(Agents).logs(agent_id, tail=query_args.tail)
