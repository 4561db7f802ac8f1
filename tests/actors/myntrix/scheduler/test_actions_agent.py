"""The ``agent`` task action against a real Myntrix module: an agent that is a real Python
process, started, stopped and restarted through its actor."""

from __future__ import annotations

import uuid

import pytest
import trio
from agents_support import AgentKit, gone

from actors.myntrix.agents import Agents, AgentStatus
from actors.myntrix.scheduler.actions import ACTIONS, ActionContext, ActionOutcome
from vareon_runtime.bus import EventBus
from vareon_runtime.errors import InvalidRequestError
from vareon_runtime.registry import Registry

TIMEOUT = 30.0
FOREVER = "import time\nprint('up', flush=True)\nwhile True:\n    time.sleep(1)\n"


async def act(registry: Registry, agent_id: str, operation: str) -> tuple[ActionOutcome, list[str]]:
    lines: list[str] = []
    ctx = ActionContext(
        task_id=str(uuid.uuid4()), run_id=str(uuid.uuid4()), registry=registry, bus=EventBus(), log=lines.append
    )
    params = ACTIONS.validate("agent", {"agentId": agent_id, "operation": operation})
    with trio.fail_after(TIMEOUT):
        outcome = await ACTIONS.action("agent").run(params, ctx)
    return outcome, lines


async def test_start_stop_and_restart_an_agent(kit: AgentKit, agents: Agents) -> None:
    agent = await kit.create(agents, FOREVER)
    outcome, lines = await act(kit.registry, agent.id, "start")
    assert outcome == ActionOutcome(ok=True)
    started = await kit.assert_consistent(agents, agent.id)
    assert started.status is AgentStatus.RUNNING and started.pid is not None
    assert lines == [f"agent {agent.id}: start", f"agent {agent.id} (worker) is running (pid {started.pid})"]

    outcome, _ = await act(kit.registry, agent.id, "restart")
    assert outcome == ActionOutcome(ok=True)
    restarted = await kit.assert_consistent(agents, agent.id)
    assert restarted.status is AgentStatus.RUNNING and restarted.pid not in (None, started.pid)
    assert gone(started.pid)

    outcome, lines = await act(kit.registry, agent.id, "stop")
    assert outcome == ActionOutcome(ok=True)
    stopped = await kit.assert_consistent(agents, agent.id)
    assert stopped.status is AgentStatus.STOPPED
    assert lines[-1] == f"agent {agent.id} (worker) is stopped"
    assert restarted.pid is not None and gone(restarted.pid)


async def test_asking_for_the_state_an_agent_is_in_succeeds_like_supervisorctl(kit: AgentKit, agents: Agents) -> None:
    agent = await kit.create(agents, FOREVER)
    outcome, lines = await act(kit.registry, agent.id, "stop")
    assert outcome == ActionOutcome(ok=True)
    assert lines[-1] == f"agent {agent.id}: nothing to do, agent 'worker' is already stopped"
    await act(kit.registry, agent.id, "start")
    running = await kit.assert_consistent(agents, agent.id)
    outcome, lines = await act(kit.registry, agent.id, "start")
    assert outcome == ActionOutcome(ok=True)
    assert lines[-1] == f"agent {agent.id}: nothing to do, agent 'worker' is already running (pid {running.pid})"
    assert (await kit.assert_consistent(agents, agent.id)).pid == running.pid
    await agents.stop(agent.id)


async def test_an_agent_whose_command_cannot_run_any_more_fails_the_run(kit: AgentKit, agents: Agents) -> None:
    agent = await kit.create(agents, FOREVER)
    kit.tmp_path.joinpath(f"{kit.tokens[agent.id]}.py").unlink()
    program = kit.tmp_path / "gone.sh"
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    await agents.update(agent.id, {"configuration": {"command": [str(program)]}})
    program.unlink()
    outcome, lines = await act(kit.registry, agent.id, "start")
    assert outcome.ok is False
    assert outcome.error is not None and outcome.error.startswith(f"agent {agent.id} could not start: ")
    assert "does not exist" in outcome.error
    assert lines[-1] == outcome.error


async def test_an_unknown_agent_fails_the_run_with_the_reason(kit: AgentKit, agents: Agents) -> None:
    missing = str(uuid.uuid4())
    outcome, _ = await act(kit.registry, missing, "restart")
    assert outcome == ActionOutcome(ok=False, error=f"agent {missing} could not restart: no agent has the id {missing!r}")


async def test_without_the_myntrix_module_the_run_fails_saying_so() -> None:
    agent_id = str(uuid.uuid4())
    outcome, lines = await act(Registry(), agent_id, "start")
    assert outcome == ActionOutcome(
        ok=False, error=f"the Myntrix module is not running, so agent {agent_id} cannot start"
    )
    assert lines == [outcome.error]


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"agentId": "not-a-uuid", "operation": "start"}, "must be an agent id \\(a UUID\\), not 'not-a-uuid'"),
        ({"agentId": str(uuid.UUID(int=1)), "operation": "kill"}, "parameters.operation"),
        ({"operation": "start"}, "parameters.agentId: Field required"),
    ],
)
def test_bad_parameters_are_422(parameters: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidRequestError, match=message):
        ACTIONS.validate("agent", parameters)


def test_agent_ids_are_normalised_and_both_spellings_accepted() -> None:
    agent_id = uuid.UUID(int=7)
    params = ACTIONS.validate("agent", {"agent_id": str(agent_id).upper(), "operation": "stop"})
    assert params.masked() == {"agentId": str(agent_id), "operation": "stop"}
