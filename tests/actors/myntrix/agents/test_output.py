"""``AgentOutput`` on a real store: lines are written in order and none is lost, even when the
actor stops while a batch waits for the writer."""

from __future__ import annotations

import threading

import trio
import trio.testing
from agents_support import TIMEOUT, AgentKit
from sqlalchemy.orm import Session

from actors.myntrix.agents import Agents
from actors.myntrix.agents.output import AgentOutput, read_logs

SLEEPER = "import time\nwhile True: time.sleep(1)\n"


async def test_lines_whose_write_was_cancelled_in_the_queue_are_written_by_the_next_flush(
    kit: AgentKit, agents: Agents
) -> None:
    # As when an agent's actor stops: its flusher is cancelled while its batch waits for the
    # store's writer (which drops a write cancelled before it took it), then on_stop flushes.
    agent = await kit.create(agents, SLEEPER)
    output = AgentOutput(agent.id, store=kit.store, bus=kit.bus, settings=kit.settings)
    began, release = threading.Event(), threading.Event()

    def hold(session: Session) -> None:
        began.set()
        release.wait(TIMEOUT)

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as writer:
            writer.start_soon(kit.store.write, hold)
            await trio.to_thread.run_sync(began.wait, TIMEOUT)  # the writer is busy with `hold`
            output.add("stdout", "one")
            output.add("stderr", "two")
            async with trio.open_nursery() as flushing:
                flushing.start_soon(output.flush)
                await trio.testing.wait_all_tasks_blocked()  # its write waits in the queue
                flushing.cancel_scope.cancel()
            release.set()
        output.add("system", "three")
        await output.flush()
        stored = await kit.store.read(read_logs(agent.id, 10))
    assert [(line.stream, line.line) for line in stored] == [("stdout", "one"), ("stderr", "two"), ("system", "three")]
