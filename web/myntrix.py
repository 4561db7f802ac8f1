"""Myntrix over HTTP (seeds 001, 003): agents and their lifecycle, the host's metrics, jobs.

Every handler reaches the domain through the registry (:func:`actors.myntrix.agents_of`) and
lets the :class:`~actors.myntrix.Agents` face refuse: 404 for an unknown id, 409 for a start of a
running agent or a stop of a stopped one, 422 for a configuration that cannot run, with the
reason. Bodies go out with the seeds' camelCase names. Lists take ``?limit=`` and ``?offset=``,
answer a JSON array and put the total in ``X-Total-Count``.

Admins create, change and delete agents (they decide what runs on the host); operators start,
stop and restart them; viewers read.

``/api/myntrix/system-metrics`` answers the sampler's latest sample and history; on a host where
psutil is refused it answers mocked values with the reason, never a 500.
"""

from __future__ import annotations

from pydantic import BaseModel, Field
from quart import Blueprint
from quart_schema import validate_querystring, validate_request, validate_response

from actors.myntrix import (
    Agent,
    AgentCreate,
    AgentLogLine,
    Agents,
    AgentStatus,
    AgentUpdate,
    GetSystemMetrics,
    Job,
    Jobs,
    JobStatus,
    SystemMetrics,
    agents_of,
    jobs_of,
    sampler_of,
)
from vareon_runtime.auth import Role
from vareon_runtime.errors import NotRegisteredError, UnavailableError

from .context import current_context
from .permissions import requires

__all__ = ["TOTAL_COUNT_HEADER", "AgentListQuery", "AgentLogsQuery", "JobListQuery", "blueprint"]

TOTAL_COUNT_HEADER = "X-Total-Count"

blueprint = Blueprint("myntrix", __name__)


class AgentListQuery(BaseModel):
    """``GET /api/myntrix/agents`` query."""

    limit: int = Field(50, ge=1, le=500, description="Agents per page.")
    offset: int = Field(0, ge=0, description="Agents skipped before the page.")
    status: AgentStatus | None = Field(None, description="Only agents in this status.")


class AgentLogsQuery(BaseModel):
    """``GET /api/myntrix/agents/{id}/logs`` query."""

    tail: int = Field(100, ge=1, le=10_000, description="The last this many lines, oldest first.")


_NOT_RUNNING = (
    "the Myntrix module is not running (not installed, disabled, or restarting); see /api/system/status"
)


class JobListQuery(BaseModel):
    """``GET /api/myntrix/jobs`` query."""

    limit: int = Field(50, ge=1, le=500, description="Jobs per page.")
    offset: int = Field(0, ge=0, description="Jobs skipped before the page.")
    status: JobStatus | None = Field(None, description="Only jobs in this status.")
    type: str | None = Field(None, max_length=64, description="Only jobs of this type, such as agent.start.")


async def _jobs() -> Jobs:
    try:
        return await jobs_of(current_context().registry)
    except NotRegisteredError:
        raise UnavailableError(_NOT_RUNNING) from None


async def _agents() -> Agents:
    try:
        return await agents_of(current_context().registry)
    except NotRegisteredError:
        raise UnavailableError(_NOT_RUNNING) from None


@blueprint.get("/api/myntrix/agents")
@requires(Role.VIEWER)
@validate_querystring(AgentListQuery)
@validate_response(list[Agent])
async def list_agents(query_args: AgentListQuery) -> tuple[list[Agent], int, dict[str, str]]:
    """A page of agents, oldest first; the total in ``X-Total-Count``."""
    status = query_args.status.value if query_args.status is not None else None
    page = await (await _agents()).list(limit=query_args.limit, offset=query_args.offset, status=status)
    return page.items, 200, {TOTAL_COUNT_HEADER: str(page.total)}


@blueprint.post("/api/myntrix/agents")
@requires(Role.ADMIN)
@validate_request(AgentCreate)
@validate_response(Agent, 201)
async def create_agent(data: AgentCreate) -> tuple[Agent, int]:
    """Add an agent, stopped. 422 when its command cannot run here (the reason in details)."""
    return await (await _agents()).create(data), 201


@blueprint.get("/api/myntrix/agents/<agent_id>")
@requires(Role.VIEWER)
@validate_response(Agent)
async def get_agent(agent_id: str) -> Agent:
    """One agent."""
    return await (await _agents()).get(agent_id)


@blueprint.put("/api/myntrix/agents/<agent_id>")
@requires(Role.ADMIN)
@validate_request(AgentUpdate)
@validate_response(Agent)
async def update_agent(agent_id: str, data: AgentUpdate) -> Agent:
    """Change the fields given; a new configuration restarts a running process with it."""
    return await (await _agents()).update(agent_id, data)


@blueprint.delete("/api/myntrix/agents/<agent_id>")
@requires(Role.ADMIN)
async def delete_agent(agent_id: str) -> tuple[str, int]:
    """Stop the agent's process and remove the agent and its logs."""
    await (await _agents()).delete(agent_id)
    return "", 204


@blueprint.post("/api/myntrix/agents/<agent_id>/start")
@requires(Role.OPERATOR)
@validate_response(Agent)
async def start_agent(agent_id: str) -> Agent:
    """Start the agent's process and keep it running. 409 when it already runs."""
    return await (await _agents()).start(agent_id)


@blueprint.post("/api/myntrix/agents/<agent_id>/stop")
@requires(Role.OPERATOR)
@validate_response(Agent)
async def stop_agent(agent_id: str) -> Agent:
    """Stop the agent's process (SIGTERM, its stop timeout, SIGKILL). 409 when it is stopped."""
    return await (await _agents()).stop(agent_id)


@blueprint.post("/api/myntrix/agents/<agent_id>/restart")
@requires(Role.OPERATOR)
@validate_response(Agent)
async def restart_agent(agent_id: str) -> Agent:
    """Stop the agent's process if it runs, then start it."""
    return await (await _agents()).restart(agent_id)


@blueprint.get("/api/myntrix/agents/<agent_id>/logs")
@requires(Role.VIEWER)
@validate_querystring(AgentLogsQuery)
@validate_response(list[AgentLogLine])
async def agent_logs(agent_id: str, query_args: AgentLogsQuery) -> list[AgentLogLine]:
    """The agent's last ``tail`` output lines, oldest first."""
    return await (await _agents()).logs(agent_id, tail=query_args.tail)


@blueprint.get("/api/myntrix/system-metrics")
@requires(Role.VIEWER)
@validate_response(SystemMetrics)
async def system_metrics() -> SystemMetrics:
    """The host's CPU, memory, disk of the data directory and load: the latest sample and the
    history, oldest first. ``mocked`` with a ``reason`` when psutil was skipped or failed."""
    try:
        sampler = await sampler_of(current_context().registry)
    except NotRegisteredError:
        raise UnavailableError(_NOT_RUNNING) from None
    metrics: SystemMetrics = await sampler.ask(GetSystemMetrics())
    return metrics


@blueprint.get("/api/myntrix/jobs")
@requires(Role.VIEWER)
@validate_querystring(JobListQuery)
@validate_response(list[Job])
async def list_jobs(query_args: JobListQuery) -> tuple[list[Job], int, dict[str, str]]:
    """Running, pending and recent jobs with their progress, newest first; the total in
    ``X-Total-Count``."""
    status = query_args.status.value if query_args.status is not None else None
    page = await (await _jobs()).list(
        limit=query_args.limit, offset=query_args.offset, status=status, type=query_args.type
    )
    return page.items, 200, {TOTAL_COUNT_HEADER: str(page.total)}
