"""``vareon bench agents``: its kill-to-serving measurement, on an agent and under supervisord."""

from __future__ import annotations

import sys
from importlib.metadata import entry_points
from pathlib import Path

import trio
from agents_support import TIMEOUT, AgentKit

from actors.myntrix.agents import Agents, bench
from vareon_runtime.bench.processes import free_port


def test_the_benchmark_is_installed_as_agents() -> None:
    (point,) = [p for p in entry_points(group="vareon.benchmarks") if p.name == "agents"]
    assert point.load() is bench.main


async def test_each_kill_of_an_agent_is_followed_by_a_new_pid_serving(kit: AgentKit, agents: Agents) -> None:
    port = free_port()
    script = kit.tmp_path / "server.py"
    script.write_text(bench.SERVER)
    config = {"command": [sys.executable, str(script), str(port)], "backoffInitial": 0, "backoffMax": 0, "maxRestarts": 100}
    agent = await agents.create({"name": "target", "configuration": config})
    with trio.fail_after(TIMEOUT):
        await agents.start(agent.id)
        latencies = await trio.to_thread.run_sync(bench._crash_latencies, port, 3)
        assert len(latencies) == 3 and all(0 < s < 10 for s in latencies)
        state = await agents.state(agent.id)
        assert state.restarts == 3 and await trio.to_thread.run_sync(bench._serving_pid, port) == state.pid
        await agents.stop(agent.id)


def test_supervisord_is_measured_the_same_way(tmp_path: Path) -> None:
    script = tmp_path / "server.py"
    script.write_text(bench.SERVER)
    latencies = bench._supervisord(tmp_path, 2, script)
    assert len(latencies) == 2 and all(0 < s < 30 for s in latencies)
