"""Races between requests, and a store that fails at the worst moment: the API never says
stopped (or not found) while a process of the agent runs, and a failing write never crashes an
actor into killing a healthy process."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import trio
from agents_support import TIMEOUT, AgentKit, until

from actors.myntrix.agents import Agents, AgentStatus
from vareon_runtime.errors import ConflictError, InvalidRequestError, NotFoundError, StoreError

SLEEPER = "import time\nwhile True: time.sleep(1)\n"
EXIT_ON_FLAG = (
    "import os, sys, time\n"
    "while not os.path.exists(sys.argv[2]): time.sleep(0.02)\n"
    "sys.exit(3)\n"
)


class FlakyStore:
    """Makes the actor's state saves (``AgentRow.save``) fail while ``failures`` > 0, or all
    of them while ``always`` is set."""

    def __init__(self, kit: AgentKit, monkeypatch: pytest.MonkeyPatch, *, names: tuple[str, ...] = ("AgentRow.save.",)) -> None:
        self.failures = 0
        self.always = False
        self.failed = 0
        original = kit.store.write
        prefixes = names

        async def write(fn: Callable[..., Any]) -> Any:
            if getattr(fn, "__qualname__", "").startswith(prefixes) and (self.always or self.failures > 0):
                self.failures = max(0, self.failures - 1)
                self.failed += 1
                raise StoreError("injected write failure")
            return await original(fn)

        monkeypatch.setattr(kit.store, "write", write)


async def _no_process_left(kit: AgentKit, agent_id: str) -> None:
    with trio.fail_after(TIMEOUT):
        while kit.processes_of(agent_id):
            await trio.sleep(0.02)


async def test_a_request_during_delete_does_not_bring_the_agent_back(
    kit: AgentKit, agents: Agents, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent = await kit.create(agents, SLEEPER)
    await agents.start(agent.id)
    original_release = agents.actors.release
    outcome: list[object] = []

    async def racing_state() -> None:
        try:
            outcome.append(await agents.state(agent.id))
        except Exception as exc:
            outcome.append(exc)

    async def release_then_race(agent_id: str, message: Any, *, timeout: float) -> None:
        await original_release(agent_id, message, timeout=timeout)
        # The actor is gone, the row not yet: a request arrives right now.
        nursery.start_soon(racing_state)
        name = f"agent/{agent_id}"
        with trio.fail_after(TIMEOUT):
            while True:
                if name in agents.actors.supervisor or outcome:
                    break  # the request brought the actor back (or finished)
                if agents.locks(agent_id).statistics().tasks_waiting:
                    break  # the request waits for the delete to finish
                await trio.sleep(0.005)

    monkeypatch.setattr(agents.actors, "release", release_then_race)
    async with trio.open_nursery() as nursery:
        with trio.fail_after(TIMEOUT):
            await agents.delete(agent.id)
    assert len(outcome) == 1 and isinstance(outcome[0], NotFoundError), outcome
    assert f"agent/{agent.id}" not in agents.actors.supervisor
    await _no_process_left(kit, agent.id)
    with pytest.raises(NotFoundError):
        await agents.get(agent.id)


async def test_concurrent_reconfigurations_neither_fail_nor_leave_two_processes(kit: AgentKit, agents: Agents) -> None:
    agent = await kit.create(agents, SLEEPER)
    await agents.start(agent.id)
    errors: list[Exception] = []

    async def reconfigure(timeout: float) -> None:
        try:
            await agents.update(agent.id, {"configuration": {**kit.config(SLEEPER), "stopTimeout": timeout}})
        except Exception as exc:
            errors.append(exc)

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            for timeout in (1.0, 1.5, 2.5):
                nursery.start_soon(reconfigure, timeout)
    assert errors == []
    state = await agents.state(agent.id)
    assert state.status is AgentStatus.RUNNING and state.pid is not None


async def test_starting_an_actor_twice_is_a_conflict_not_a_supervisor_error(kit: AgentKit, agents: Agents) -> None:
    agent = await kit.create(agents, SLEEPER)
    await agents.state(agent.id)  # its actor runs
    with pytest.raises(ConflictError):
        await agents.actors.start(agent.id)


async def test_a_start_whose_running_state_is_not_recorded_leaves_no_process(
    kit: AgentKit, agents: Agents, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent = await kit.create(agents, SLEEPER)
    await agents.state(agent.id)  # its actor runs, the agent stopped
    flaky = FlakyStore(kit, monkeypatch)
    flaky.failures = 1  # the save of the running state
    with trio.fail_after(TIMEOUT), pytest.raises(StoreError):
        await agents.start(agent.id)
    assert flaky.failed == 1
    await _no_process_left(kit, agent.id)
    state = await kit.assert_consistent(agents, agent.id)
    assert state.status is AgentStatus.STOPPED


async def test_a_stop_whose_stopping_state_is_not_recorded_still_ends_stopped(
    kit: AgentKit, agents: Agents, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent = await kit.create(agents, SLEEPER)
    await agents.start(agent.id)
    flaky = FlakyStore(kit, monkeypatch)
    flaky.failures = 1  # the save of the stopping state
    with trio.fail_after(TIMEOUT):
        stopped = await agents.stop(agent.id)
    assert flaky.failed == 1 and stopped.status is AgentStatus.STOPPED
    await _no_process_left(kit, agent.id)
    state = await kit.assert_consistent(agents, agent.id)
    assert state.status is AgentStatus.STOPPED


async def test_a_failing_store_after_an_exit_does_not_crash_the_actor(
    kit: AgentKit, agents: Agents, monkeypatch: pytest.MonkeyPatch
) -> None:
    flag = kit.tmp_path / "exit-now"
    agent = await kit.create(agents, EXIT_ON_FLAG, str(flag), restart="temporary")
    with kit.bus.subscribe(f"agent.{agent.id}.status") as statuses:
        await agents.start(agent.id)
        flaky = FlakyStore(kit, monkeypatch, names=("AgentRow.save.", "AgentRow.save_health."))
        flaky.always = True
        flag.write_text("")
        await until(statuses, lambda data: data["status"] == "error")
    assert flaky.failed >= 1
    await _no_process_left(kit, agent.id)
    flaky.always = False  # the store is back: the row catches up without any request
    with trio.fail_after(TIMEOUT):
        while (await agents.get(agent.id)).status is not AgentStatus.ERROR:
            await trio.sleep(0.02)
    state = await kit.assert_consistent(agents, agent.id)
    assert state.status is AgentStatus.ERROR and state.restarts == 0


async def test_a_failing_health_write_does_not_kill_a_healthy_process(
    kit: AgentKit, agents: Agents, monkeypatch: pytest.MonkeyPatch
) -> None:
    from actors.myntrix.agents.health import TreeSampler

    agent = await kit.create(agents, SLEEPER)
    started = await agents.start(agent.id)
    flaky = FlakyStore(kit, monkeypatch, names=("AgentRow.save_health.",))
    flaky.always = True
    # A busy process: its health drops by 10, which is written to the row (and fails).
    monkeypatch.setattr(TreeSampler, "sample", lambda self, pid: (95.0, 1.0))
    with trio.fail_after(TIMEOUT):
        while flaky.failed < 3:  # written again at later rounds, by the same actor
            await trio.sleep(0.02)
    state = await agents.state(agent.id)
    assert state.status is AgentStatus.RUNNING and state.pid == started.pid
    assert kit.processes_of(agent.id) == {started.pid}
    flaky.always = False
    with trio.fail_after(TIMEOUT):
        while (await agents.get(agent.id)).health != 90:
            await trio.sleep(0.02)


async def test_a_leftover_group_that_cannot_be_stopped_is_not_started_twice(
    kit: AgentKit, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    import actors.myntrix.agents.actor as agent_module
    import actors.myntrix.agents.service as agents_module
    from sqlalchemy import update

    from actors.myntrix.agents import AgentRecord
    from drivers import OSProcess, ProcessBrokenError

    with trio.fail_after(TIMEOUT):
        module = await kit.start_module()
        agent = await kit.create(module.agents, SLEEPER)
        await module.stop()
        leftover = await OSProcess.spawn([sys.executable, "-c", "import time; time.sleep(600)"])
        try:
            assert leftover.create_time is not None
            pid, ctime = leftover.pid, leftover.create_time

            def crashed(session: Any) -> None:
                session.execute(
                    update(AgentRecord)
                    .where(AgentRecord.id == agent.id)
                    .values(status="running", desired_state="running", pid=pid, process_create_time=ctime)
                )

            await kit.store.write(crashed)

            async def refuse(*args: object, **kwargs: object) -> bool:
                raise ProcessBrokenError("operation not permitted")

            monkeypatch.setattr(agent_module, "reap_orphan_group", refuse)
            monkeypatch.setattr(agents_module, "reap_orphan_group", refuse)
            module = await kit.start_module()
            state = await module.agents.state(agent.id)
            assert state.status is AgentStatus.ERROR and "could not be stopped" in (state.last_error or "")
            row = await module.agents.get(agent.id)
            assert row.status is AgentStatus.ERROR and row.pid == pid
            assert not kit.processes_of(agent.id)  # no second copy
            with pytest.raises(InvalidRequestError, match="could not be stopped"):
                await module.agents.start(agent.id)
            assert not kit.processes_of(agent.id)
            assert (await module.agents.get(agent.id)).pid == pid
            await module.stop()
        finally:
            with trio.CancelScope(shield=True):
                await leftover.stop(1)
                await leftover.aclose()
