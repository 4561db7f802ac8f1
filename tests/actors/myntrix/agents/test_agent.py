"""Agents as supervised OS processes: real processes, a real store, the module as `vareon run` starts it.

After each scenario the invariant is checked: the API says running if and only if the agent's
process is alive (and the row agrees with the actor).
"""

from __future__ import annotations

import functools
import os
import signal
import sys
from pathlib import Path

import pytest
import trio
from agents_support import TIMEOUT, AgentKit, Module, gone, until
from sqlalchemy import update
from sqlalchemy.orm import Session

from actors.myntrix.agents import AgentRecord, Agents, AgentStatus, DesiredState, StartAgent
from actors.myntrix.agents.output import count_logs, read_logs
from drivers import OSProcess
from vareon_runtime.errors import ConflictError, InvalidRequestError, NotFoundError

# Prints a greeting on each stream, then lives until SIGTERM (default action: die).
SLEEPER = """
import os, sys, time
print(f"hello from {os.getpid()}", flush=True)
print("warming up", file=sys.stderr, flush=True)
while True:
    time.sleep(1)
"""

# Ignores SIGTERM and starts a grandchild that ignores it too; both report their pids.
STUBBORN = """
import os, signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
code = "import os, time; print('grandchild', os.getpid(), flush=True); time.sleep(600)"
subprocess.Popen([sys.executable, "-c", code])
print("child", os.getpid(), flush=True)
while True:
    time.sleep(1)
"""


async def test_start_stop_restart_and_conflicts(kit: AgentKit, agents: Agents) -> None:
    with trio.fail_after(TIMEOUT):
        agent = await kit.create(agents, SLEEPER)
        assert (agent.status, agent.desired_state, agent.pid) == (AgentStatus.STOPPED, DesiredState.STOPPED, None)
        with kit.bus.subscribe(f"agent.{agent.id}.status") as statuses:
            started = await agents.start(agent.id)
            assert started.status is AgentStatus.RUNNING and started.desired_state is DesiredState.RUNNING
            assert started.last_run is not None and started.health > 0
            assert [(await statuses.receive()).data["status"] for _ in range(2)] == ["starting", "running"]
            await kit.assert_consistent(agents, agent.id)

            with pytest.raises(ConflictError, match=rf"agent 'worker' is already running \(pid {started.pid}\)"):
                await agents.start(agent.id)

            restarted = await agents.restart(agent.id)
            assert restarted.status is AgentStatus.RUNNING and restarted.pid != started.pid
            assert started.pid is not None and gone(started.pid)
            await kit.assert_consistent(agents, agent.id)

            stopped = await agents.stop(agent.id)
            assert (stopped.status, stopped.desired_state, stopped.pid) == (AgentStatus.STOPPED, DesiredState.STOPPED, None)
            assert stopped.exit_code == -signal.SIGTERM
            assert restarted.pid is not None and gone(restarted.pid)
            with pytest.raises(ConflictError, match="agent 'worker' is already stopped"):
                await agents.stop(agent.id)
            seen = [statuses.receive_nowait().data["status"] for _ in range(statuses.queued)]
        # Every transition was published (and the row, checked above, persisted the last).
        assert seen == ["stopping", "starting", "running", "stopping", "stopped"]
        await kit.assert_consistent(agents, agent.id)


async def test_create_update_and_delete_are_published(kit: AgentKit, agents: Agents) -> None:
    with trio.fail_after(TIMEOUT), kit.bus.subscribe("agent.*") as events:
        agent = await kit.create(agents, SLEEPER)
        renamed = await agents.update(agent.id, {"name": "renamed"})
        await agents.delete(agent.id)
        seen = [events.receive_nowait() for _ in range(events.queued)]
    changes = [(e.topic, e.data.get("name")) for e in seen if not e.topic.endswith((".status", ".health", ".log"))]
    assert changes == [
        (f"agent.{agent.id}.created", agent.name),
        (f"agent.{agent.id}.updated", "renamed"),
        (f"agent.{agent.id}.deleted", None),
    ]
    assert seen[[e.topic for e in seen].index(f"agent.{agent.id}.updated")].data == renamed.model_dump(mode="json", by_alias=True)


@pytest.mark.parametrize("last", ["done", "trouble"])
async def test_output_is_captured_persisted_and_published(
    kit: AgentKit, agents: Agents, tmp_path: Path, last: str
) -> None:
    # The two pipes are read side by side, so either of the last two lines may come last, and
    # the flusher may take a batch between them. With last="trouble" that order is played out
    # for sure: "trouble" is printed only once "done" is in the database.
    go = tmp_path / "go"
    code = f"""
import os, sys, time
for n in range(60):
    print(f"line {{n}}", flush=True)
if {last!r} == "trouble":
    print("done", flush=True)
    while not os.path.exists({str(go)!r}):
        time.sleep(0.01)
    print("trouble", file=sys.stderr, flush=True)
else:
    print("trouble", file=sys.stderr, flush=True)
    print("done", flush=True)
time.sleep(600)
"""
    with trio.fail_after(TIMEOUT):
        agent = await kit.create(agents, code)
        with kit.bus.subscribe(f"agent.{agent.id}.log") as lines:
            await agents.start(agent.id)
            seen: dict[str, dict[str, str]] = {}
            while len(seen) < 2:
                data = await until(lines, lambda d: d["line"] in ("done", "trouble"))
                seen[data["line"]] = data
                if data["line"] == "done" and last == "trouble":
                    while not any(line.line == "done" for line in await kit.store.read(read_logs(agent.id, 5))):
                        await trio.sleep(0.02)
                    go.touch()
        assert seen["done"]["stream"] == "stdout" and seen["trouble"]["stream"] == "stderr"
        assert seen["done"]["time"].endswith("Z")
        # Their lines interleave in any order. The ring holds the 63 lines so far (one system
        # line, 62 of the process).
        tail = [(line.stream, line.line) for line in await agents.logs(agent.id, tail=63)]
        assert tail[0][0] == "system" and tail[0][1].startswith("started pid")
        assert ("stdout", "done") in tail and ("stderr", "trouble") in tail
        # Persisted in batches by the flusher, in the order the lines came: wait for the last
        # line published (the bus keeps their order), not for "done", which may not be the last.
        newest = [(data["stream"], data["line"])]
        while [(line.stream, line.line) for line in await kit.store.read(read_logs(agent.id, 1))] != newest:
            await trio.sleep(0.02)
        # Pruned down to log_keep (+ one prune batch) per agent.
        stored = await kit.store.read(read_logs(agent.id, 1000))
        assert kit.settings.log_keep <= len(stored) <= kit.settings.log_keep + kit.settings.log_prune_every
        assert all(line.time.tzinfo is not None for line in stored)
        # The ring buffer and the database tell the same story; a tail longer than the ring
        # (here: everything) is read from the database.
        assert [line.line for line in await agents.logs(agent.id, tail=2)] == [line.line for line in stored[-2:]]
        assert await agents.logs(agent.id, tail=5000) == stored
        await agents.stop(agent.id)
        system = [line.line for line in await agents.logs(agent.id, tail=3) if line.stream == "system"]
        assert system[-1] == "stopped: killed by SIGTERM"
        await kit.assert_consistent(agents, agent.id)


async def test_kill_9_of_the_agent_brings_a_new_pid(kit: AgentKit, agents: Agents) -> None:
    with trio.fail_after(TIMEOUT):
        agent = await kit.create(agents, SLEEPER)
        with kit.bus.subscribe(f"agent.{agent.id}.log") as lines:
            first = await agents.start(agent.id)
            # Killed once it has spoken on stderr, not before or after as it happens: the exit's
            # reason quotes the last stderr line when there is one.
            await until(lines, lambda d: d["stream"] == "stderr" and d["line"] == "warming up")
        assert first.pid is not None
        with kit.bus.subscribe(f"agent.{agent.id}.status") as statuses:
            killed_at = trio.current_time()
            os.kill(first.pid, signal.SIGKILL)
            back = await until(statuses, lambda d: d["status"] == "running" and d["pid"] != first.pid, timeout=2)
            latency = trio.current_time() - killed_at
        assert latency < 1.0, f"crash to running took {latency:.3f}s"
        state = await kit.assert_consistent(agents, agent.id)
        assert state.pid == back["pid"] and state.restarts == 1
        assert state.exit_code == -signal.SIGKILL
        assert state.last_error == "killed by SIGKILL (last stderr line: 'warming up')"
        assert gone(first.pid)


async def test_a_crash_loop_ends_in_error_after_max_restarts(kit: AgentKit, agents: Agents, tmp_path: Path) -> None:
    flag = tmp_path / "broken"
    flag.touch()
    code = f"""
import os, sys, time
if os.path.exists({str(flag)!r}):
    print("boom: the model file is missing", file=sys.stderr, flush=True)
    sys.exit(1)
print("serving", flush=True)
time.sleep(600)
"""
    with trio.fail_after(TIMEOUT):
        agent = await kit.create(agents, code, maxRestarts=3, backoffInitial=0.01, backoffMax=0.05)
        with kit.bus.subscribe(f"agent.{agent.id}.status") as statuses:
            await agents.start(agent.id)
            failed = await until(statuses, lambda d: d["status"] == "error")
        expected = (
            "gave up after 4 exits within 60s (maxRestarts=3); last: exited with code 1 "
            "(last stderr line: 'boom: the model file is missing'); start it again to retry"
        )
        assert failed["lastError"] == expected
        row = await agents.get(agent.id)
        # Persisted and visible; the desired state is still what the user set.
        assert (row.status, row.last_error, row.restarts, row.exit_code) == (AgentStatus.ERROR, expected, 3, 1)
        assert row.desired_state is DesiredState.RUNNING and row.health == 0
        await kit.assert_consistent(agents, agent.id)
        # Nothing restarts it by itself...
        await trio.sleep(0.2)
        assert (await agents.get(agent.id)).status is AgentStatus.ERROR
        # ...until a user starts it again (after fixing the cause).
        flag.unlink()
        again = await agents.start(agent.id)
        assert again.status is AgentStatus.RUNNING and again.last_error is None
        await kit.assert_consistent(agents, agent.id)


async def test_a_stop_kills_a_child_ignoring_sigterm_and_its_grandchild(kit: AgentKit, agents: Agents) -> None:
    with trio.fail_after(TIMEOUT):
        agent = await kit.create(agents, STUBBORN, stopTimeout=0.5)
        with kit.bus.subscribe(f"agent.{agent.id}.log") as lines:
            await agents.start(agent.id)
            pids: dict[str, int] = {}
            while len(pids) < 2:
                data = await until(lines, lambda d: d["line"].startswith(("child", "grandchild")))
                kind, pid = data["line"].split()
                pids[kind] = int(pid)
        started = trio.current_time()
        stopped = await agents.stop(agent.id)
        elapsed = trio.current_time() - started
        assert stopped.status is AgentStatus.STOPPED and stopped.exit_code == -signal.SIGKILL
        assert 0.5 <= elapsed < 5
        assert gone(pids["child"]) and gone(pids["grandchild"]), pids
        await kit.assert_consistent(agents, agent.id)


async def test_a_lost_expected_line_heartbeat_restarts_the_process(kit: AgentKit, agents: Agents) -> None:
    # Says it is alive three times, then hangs without a word.
    code = """
import time
for _ in range(3):
    print("alive", flush=True)
    time.sleep(0.1)
time.sleep(600)
"""
    heartbeat = {"expectLine": "^alive$", "interval": 0.5}
    with trio.fail_after(TIMEOUT):
        agent = await kit.create(agents, code, heartbeat=heartbeat)
        first = await agents.start(agent.id)
        with kit.bus.subscribe(f"agent.{agent.id}.status") as statuses:
            back = await until(statuses, lambda d: d["status"] == "running" and d["pid"] != first.pid, timeout=5)
        assert back["lastError"] == "heartbeat lost: no output line matching '^alive$' within 0.5s"
        assert first.pid is not None and gone(first.pid)
        state = await kit.assert_consistent(agents, agent.id)
        assert state.restarts == 1
        system = [line.line for line in await agents.logs(agent.id, tail=20) if line.stream == "system"]
        assert "heartbeat lost: no output line matching '^alive$' within 0.5s; stopping the process" in system
        await agents.stop(agent.id)
        await kit.assert_consistent(agents, agent.id)


async def test_a_lost_http_heartbeat_restarts_the_process(kit: AgentKit, agents: Agents, nursery: trio.Nursery) -> None:
    answering = True
    probes = 0

    async def serve(stream: trio.SocketStream) -> None:
        nonlocal probes
        async with stream:
            await stream.receive_some(4096)
            probes += 1
            if not answering:
                await trio.sleep_forever()  # stops answering: the probe times out
            await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")

    listeners = await nursery.start(functools.partial(trio.serve_tcp, serve, 0, host="127.0.0.1"))
    port = listeners[0].socket.getsockname()[1]
    heartbeat = {"url": f"http://127.0.0.1:{port}/health", "interval": 0.2, "timeout": 0.3}
    with trio.fail_after(TIMEOUT):
        agent = await kit.create(agents, SLEEPER, heartbeat=heartbeat, maxRestarts=10)
        first = await agents.start(agent.id)
        while probes < 3:
            await trio.sleep(0.05)
        # Answered probes keep it as it is.
        assert (await agents.get(agent.id)).pid == first.pid
        with kit.bus.subscribe(f"agent.{agent.id}.status") as statuses:
            answering = False
            back = await until(statuses, lambda d: d["status"] == "running" and d["pid"] != first.pid, timeout=5)
        assert back["lastError"].startswith(f"heartbeat lost: GET http://127.0.0.1:{port}/health failed: ReadTimeout")
        assert first.pid is not None and gone(first.pid)
        answering = True
        await kit.assert_consistent(agents, agent.id)
        await agents.stop(agent.id)
        await kit.assert_consistent(agents, agent.id)


async def test_restart_policies_transient_and_temporary(kit: AgentKit, agents: Agents) -> None:
    with trio.fail_after(TIMEOUT):
        done = await kit.create(agents, "print('finished')\n", name="once", restart="transient")
        with kit.bus.subscribe(f"agent.{done.id}.status") as statuses:
            await agents.start(done.id)
            ended = await until(statuses, lambda d: d["status"] not in ("starting", "running"))
        # A normal exit of a transient agent: stopped, not restarted, no error.
        assert (ended["status"], ended["exitCode"], ended["lastError"], ended["restarts"]) == ("stopped", 0, None, 0)
        await kit.assert_consistent(agents, done.id)

        broken = await kit.create(agents, "import sys; sys.exit(7)\n", name="fragile", restart="temporary")
        with kit.bus.subscribe(f"agent.{broken.id}.status") as statuses:
            await agents.start(broken.id)
            ended = await until(statuses, lambda d: d["status"] not in ("starting", "running"))
        assert ended["status"] == "error"
        assert ended["lastError"] == "exited with code 7; not restarted (restart is temporary)"
        await kit.assert_consistent(agents, broken.id)


async def test_shutdown_stops_every_process_at_once_and_a_new_start_brings_them_back(kit: AgentKit) -> None:
    with trio.fail_after(TIMEOUT):
        module = await kit.start_module()
        agents = module.agents
        stubborn = [await kit.create(agents, STUBBORN, name=f"stubborn-{n}", stopTimeout=1.0) for n in range(3)]
        idle = await kit.create(agents, SLEEPER, name="idle")
        with kit.bus.subscribe("agent.*") as events:
            before = {agent.id: (await agents.start(agent.id)).pid for agent in stubborn}
            ready: set[str] = set()
            while len(ready) < 3:  # each ignores SIGTERM from here on
                ready.add((await until(events, lambda d: d.get("line", "").startswith("child")))["id"])
        started = trio.current_time()
        await module.stop()
        # Three agents that ignore SIGTERM took one stop timeout, not three.
        assert trio.current_time() - started < 2.5
        for agent in [*stubborn, idle]:
            assert not kit.processes_of(agent.id)
        rows = {agent.id: await kit.store.read(_row(agent.id)) for agent in [*stubborn, idle]}
        for agent in stubborn:
            assert rows[agent.id] == ("stopped", "running", None)
        assert rows[idle.id] == ("stopped", "stopped", None)

        module = await kit.start_module()
        agents = module.agents
        for agent in stubborn:
            state = await kit.assert_consistent(agents, agent.id)
            assert state.status is AgentStatus.RUNNING and state.pid != before[agent.id]
        assert (await kit.assert_consistent(agents, idle.id)).status is AgentStatus.STOPPED
        await module.stop()


async def test_no_process_is_left_behind_when_the_database_is_gone(kit: AgentKit) -> None:
    with trio.fail_after(TIMEOUT):
        module = await kit.start_module()
        agent = await kit.create(module.agents, SLEEPER)
        pid = (await module.agents.start(agent.id)).pid
        assert pid is not None
        await kit.store.close()  # every write fails from here on
        await module.stop()
    assert gone(pid) and not kit.processes_of(agent.id)


async def test_processes_of_a_crashed_runtime_are_reaped_before_the_agent_starts(kit: AgentKit, tmp_path: Path) -> None:
    journal = tmp_path / "journal.txt"
    code = f"""
import os, signal, sys, time
def note(what):
    with open({str(journal)!r}, "a") as f:
        f.write(f"{{what}} {{os.getpid()}}\\n")
def term(signum, frame):
    note("exit")
    sys.exit(0)
signal.signal(signal.SIGTERM, term)
note("start")
while True:
    time.sleep(1)
"""
    with trio.fail_after(TIMEOUT):
        module = await kit.start_module()
        agent = await kit.create(module.agents, code)
        other = await kit.create(module.agents, SLEEPER, name="other")
        await module.stop()
        # A runtime that crashed left its process running: spawned outside the module, its pid and
        # creation time in the row with the desired state running, as a crash would leave them.
        config = await module.agents.get(agent.id)
        spawned: list[OSProcess] = []
        try:
            orphan = await OSProcess.spawn(config.configuration.argv)
            spawned.append(orphan)
            while not journal.exists():
                await trio.sleep(0.01)
            # And a pid recorded by an older runtime that now belongs to an unrelated process.
            stranger = await OSProcess.spawn([sys.executable, "-c", "import time; time.sleep(600)"])
            spawned.append(stranger)
            assert orphan.create_time is not None and stranger.create_time is not None
            await kit.store.write(_crashed(agent.id, orphan.pid, orphan.create_time))
            await kit.store.write(_crashed(other.id, stranger.pid, stranger.create_time - 50))

            module = await kit.start_module()
            assert await orphan.wait() == 0  # stopped with SIGTERM (it exits 0 on it) by the reaper
            state = await kit.assert_consistent(module.agents, agent.id)
            assert state.status is AgentStatus.RUNNING and state.pid != orphan.pid
            while journal.read_text().count("\n") < 3:  # the new process is still starting up
                await trio.sleep(0.01)
            assert journal.read_text().splitlines() == [f"start {orphan.pid}", f"exit {orphan.pid}", f"start {state.pid}"]
            # The unrelated process was left alone; the other agent started its own.
            assert stranger.returncode is None
            other_state = await kit.assert_consistent(module.agents, other.id)
            assert other_state.status is AgentStatus.RUNNING and other_state.pid != stranger.pid
            await module.stop()
        finally:
            with trio.CancelScope(shield=True):
                for proc in spawned:
                    await proc.stop(1)
                    await proc.aclose()


async def test_a_configuration_that_cannot_run_is_refused_with_the_reason(kit: AgentKit, agents: Agents, tmp_path: Path) -> None:
    with trio.fail_after(TIMEOUT):
        with pytest.raises(InvalidRequestError, match=r"cannot run: executable 'no-such-agent-x' was not found on PATH") as missing:
            await agents.create({"name": "x", "configuration": {"argv": ["no-such-agent-x", "--serve"]}})
        assert missing.value.details["field"] == "configuration.argv"
        with pytest.raises(InvalidRequestError, match=r"working directory '.*nowhere' does not exist") as bad_cwd:
            await agents.create({"name": "x", "configuration": {"argv": [sys.executable], "cwd": str(tmp_path / "nowhere")}})
        assert bad_cwd.value.details["field"] == "configuration.cwd"
        with pytest.raises(InvalidRequestError, match=r"did you mean \['python3', 'agent.py'\]"):
            await agents.create({"name": "x", "configuration": {"argv": ["python3 agent.py"]}})
        with pytest.raises(InvalidRequestError, match="invalid AgentCreate") as shell:
            await agents.create({"name": "x", "configuration": {"argv": "python3 agent.py"}})
        assert "not the shell command line 'python3 agent.py'" in shell.value.details[0]["msg"]
        assert (await agents.list()).total == 0

        # A configuration that ran before and cannot any more: error, with the reason.
        script = tmp_path / "vanishing.py"
        script.write_text("import time; time.sleep(600)\n")
        agent = await agents.create({"name": "v", "configuration": {"argv": [sys.executable, str(script)], "cwd": str(tmp_path)}})
        (tmp_path / "gone").mkdir()
        await agents.update(agent.id, {"configuration": {"argv": [sys.executable, str(script)], "cwd": str(tmp_path / "gone")}})
        (tmp_path / "gone").rmdir()
        with pytest.raises(InvalidRequestError, match=r"cannot start: working directory '.*gone' does not exist"):
            await agents.start(agent.id)
        row = await agents.get(agent.id)
        assert row.status is AgentStatus.ERROR and row.last_error is not None and "does not exist" in row.last_error
        assert row.pid is None and row.desired_state is DesiredState.RUNNING
        # Stopping an agent in error: stopped, the reason still shown; a second stop conflicts.
        stopped = await agents.stop(agent.id)
        assert (stopped.status, stopped.desired_state, stopped.last_error) == (AgentStatus.STOPPED, DesiredState.STOPPED, row.last_error)
        with pytest.raises(ConflictError):
            await agents.stop(agent.id)


async def test_a_crash_of_the_actor_itself_stops_and_restarts_its_process(kit: AgentKit, agents: Agents) -> None:
    """The kernel supervisor restarts a crashed agent actor (a bug, not the program's fault): the
    old incarnation stops the process, the new one starts it again; nothing is left behind."""
    with trio.fail_after(TIMEOUT):
        agent = await kit.create(agents, SLEEPER)
        first = await agents.start(agent.id)
        assert first.pid is not None
        with kit.bus.subscribe(f"agent.{agent.id}.status") as statuses:
            # A refusal sent with tell has no asker to go back to: the actor crashes (decision 0004).
            await kit.registry.lookup(f"agent/{agent.id}").tell(StartAgent())
            back = await until(statuses, lambda d: d["status"] == "running" and d["pid"] != first.pid)
        assert gone(first.pid)
        state = await kit.assert_consistent(agents, agent.id)
        # The program did not crash: its restart count is untouched.
        assert state.pid == back["pid"] and state.restarts == 0
        assert agents.actors.supervisor.child(f"agent/{agent.id}").restarts == 1


async def test_unknown_ids_are_not_found(agents: Agents) -> None:
    with trio.fail_after(TIMEOUT):
        for call in (agents.get, agents.start, agents.stop, agents.restart, agents.delete, agents.logs):
            with pytest.raises(NotFoundError, match="no agent has the id"):
                await call("5b0c8a0e-0000-4000-8000-000000000000")
        with pytest.raises(NotFoundError, match=r"agent ids are UUIDs"):
            await agents.get("../etc/passwd")


async def test_update_replaces_the_process_and_delete_leaves_nothing(kit: AgentKit, agents: Agents) -> None:
    with trio.fail_after(TIMEOUT):
        agent = await kit.create(agents, SLEEPER)
        first = await agents.start(agent.id)
        renamed = await agents.update(agent.id, {"name": "renamed", "type": "llm"})
        # A new name is not a new process.
        assert (renamed.name, renamed.type, renamed.pid) == ("renamed", "llm", first.pid)
        assert (await agents.state(agent.id)).name == "renamed"

        config = agent.configuration.model_dump(by_alias=True)
        config["env"] = {"MODE": "fast"}
        updated = await agents.update(agent.id, {"configuration": config})
        assert updated.configuration.env == {"MODE": "fast"}
        assert updated.status is AgentStatus.RUNNING and updated.pid != first.pid
        assert first.pid is not None and gone(first.pid)
        await kit.assert_consistent(agents, agent.id)

        pid = updated.pid
        await agents.delete(agent.id)
        assert pid is not None and gone(pid)
        assert not kit.processes_of(agent.id)
        assert f"agent/{agent.id}" not in kit.registry
        assert await kit.store.read(count_logs(agent.id)) == 0
        with pytest.raises(NotFoundError):
            await agents.get(agent.id)


async def test_list_pages_and_filters(kit: AgentKit, agents: Agents) -> None:
    with trio.fail_after(TIMEOUT):
        made = [await kit.create(agents, SLEEPER, name=f"a{n}") for n in range(5)]
        await agents.start(made[1].id)
        page = await agents.list(limit=2, offset=1)
        assert page.total == 5 and [a.name for a in page.items] == ["a1", "a2"]
        running = await agents.list(status="running")
        assert running.total == 1 and running.items[0].id == made[1].id
        with pytest.raises(InvalidRequestError, match="limit must be between 1 and 500"):
            await agents.list(limit=501)
        with pytest.raises(InvalidRequestError, match="status must be one of"):
            await agents.list(status="sleeping")
        await kit.assert_consistent(agents, made[1].id)


async def test_health_is_sampled_and_published(kit: AgentKit, agents: Agents) -> None:
    with trio.fail_after(TIMEOUT):
        agent = await kit.create(agents, SLEEPER)
        with kit.bus.subscribe(f"agent.{agent.id}.health") as health:
            await agents.start(agent.id)
            sample = await until(health, lambda d: d["cpuPercent"] is not None)
        assert 1 <= sample["health"] <= 100 and 0 <= sample["memoryPercent"] < 100
        await agents.stop(agent.id)
        assert (await agents.get(agent.id)).health == 0


def test_the_wire_shape_is_camel_case_and_accepts_both_spellings() -> None:
    from actors.myntrix.agents import AgentConfig

    config = AgentConfig.model_validate({"argv": ["x"], "stop_timeout": 1, "maxRestarts": 2})
    assert (config.stop_timeout, config.max_restarts) == (1.0, 2)
    dumped = config.model_dump(mode="json", by_alias=True)
    assert {"argv", "stopTimeout", "maxRestarts", "backoffInitial", "backoffMax"} <= set(dumped)
    assert "command" not in dumped


def test_the_program_is_argv_and_command_its_former_name() -> None:
    from actors.myntrix.agents import AgentConfig

    assert AgentConfig.model_validate({"command": ["x", "-v"]}).argv == ["x", "-v"]
    assert AgentConfig.model_validate({"argv": ["x"], "command": ["x"]}).argv == ["x"]
    with pytest.raises(ValueError, match="give argv"):
        AgentConfig.model_validate({"argv": ["x"], "command": ["y"]})


def _row(agent_id: str):  # type: ignore[no-untyped-def]
    def read(session: Session) -> tuple[str, str, int | None]:
        row = session.get(AgentRecord, agent_id)
        assert row is not None
        return row.status, row.desired_state, row.pid

    return read


def _crashed(agent_id: str, pid: int, create_time: float):  # type: ignore[no-untyped-def]
    def write(session: Session) -> None:
        session.execute(
            update(AgentRecord)
            .where(AgentRecord.id == agent_id)
            .values(status="running", desired_state="running", pid=pid, process_create_time=create_time)
        )

    return write


async def test_module_fixture_is_usable(module: Module) -> None:
    assert (await module.agents.list()).total == 0
