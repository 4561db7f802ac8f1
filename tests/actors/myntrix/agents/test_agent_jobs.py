"""The agents' start, stop and restart as jobs: written with the agent's state, refusals failed."""

from __future__ import annotations

import pytest
import trio
from agents_support import TIMEOUT, AgentKit

from actors.kit import JobStatus
from actors.myntrix.agents import Agents
from vareon_runtime.errors import ConflictError

SLEEPER = "import time\nwhile True:\n    time.sleep(1)\n"


async def test_agent_start_stop_and_refusals_are_jobs(kit: AgentKit, agents: Agents) -> None:
    agent = await kit.create(agents, SLEEPER, name="sleeper")
    with trio.fail_after(TIMEOUT):
        running = await agents.start(agent.id)
        with pytest.raises(ConflictError):
            await agents.start(agent.id)
        await agents.stop(agent.id)
    page = await agents.jobs.list(type="agent.start")
    assert page.total == 2
    refused, started = page.items
    assert started.status is JobStatus.COMPLETED and started.progress == 100
    assert started.name == "start agent sleeper"
    assert started.details == {"agentId": agent.id, "action": "start", "status": "running", "pid": running.pid}
    assert started.logs == f"agent running, pid {running.pid}"
    assert refused.status is JobStatus.FAILED and refused.logs is not None
    assert refused.logs.startswith("ConflictError: ") and "running" in refused.logs
    (stopped,) = (await agents.jobs.list(type="agent.stop")).items
    assert stopped.status is JobStatus.COMPLETED and stopped.details is not None
    assert stopped.details["status"] == "stopped" and stopped.details["pid"] is None
