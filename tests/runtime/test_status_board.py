"""The status board: the supervision tree by state and restarts, from what supervisors announce;
and the latency histograms behind /metrics (the store's commit latency among them)."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from vareon_runtime.actor import Actor, handles
from vareon_runtime.bus import EventBus
from vareon_runtime.errors import ActorCrashedError, NotRegisteredError
from vareon_runtime.latency import LatencyHistogram
from vareon_runtime.messages import Message
from vareon_runtime.registry import Registry
from vareon_runtime.status_board import StatusBoard
from vareon_runtime.store import Store
from vareon_runtime.store.models import EventRecord
from vareon_runtime.supervisor import Backoff, ChildSpec, Supervisor

TIMEOUT = 10


class Crash(Message):
    pass


class Crasher(Actor):
    @handles(Crash)
    async def crash(self, msg: Crash) -> None:
        raise RuntimeError("asked to crash")


def crasher(name: str) -> ChildSpec:
    return ChildSpec(name, Crasher)


async def settled(board: StatusBoard, supervisor: Supervisor) -> None:
    """Wait until the board agrees with the supervisor about every child."""
    with trio.fail_after(TIMEOUT):
        while True:
            known = {(c.supervisor, c.name): c.status for c in board.children()}
            if all(known.get((supervisor.name, c.name)) == c.status.value for c in supervisor.which_children()):
                return
            await trio.sleep(0.005)


async def test_children_by_state_and_restarts_across_supervisors(nursery: trio.Nursery, log_records: object) -> None:
    bus, registry = EventBus(), Registry()
    board = StatusBoard(bus, registry)  # made before anything starts, as the component does
    inner = Supervisor("agents", [crasher("agent/a"), crasher("agent/b")], bus=bus, registry=registry, backoff=Backoff(0, 0))
    root = Supervisor("root", [ChildSpec("agents", lambda: inner), ChildSpec("status-board", lambda: board)], bus=bus)
    await nursery.start(root.run)
    assert registry.face(StatusBoard) is board, "provided while it runs"
    await settled(board, root)
    await settled(board, inner)
    assert board.by_state() == {
        ("root", "Supervisor", "running"): 1,
        ("root", "StatusBoard", "running"): 1,
        ("agents", "Crasher", "running"): 2,
    }

    for restarts in (1, 2):
        with pytest.raises(ActorCrashedError):
            await inner.ref("agent/a").ask(Crash(), timeout=TIMEOUT)
        with trio.fail_after(TIMEOUT):
            while inner.child("agent/a").restarts < restarts or board.restarts().get(("agents", "Crasher"), 0) < restarts:
                await trio.sleep(0.005)
    await settled(board, inner)
    assert board.restarts()[("agents", "Crasher")] == 2
    assert board.by_state()[("agents", "Crasher", "running")] == 2

    # A deleted actor leaves the board; its restarts stay counted (a counter never goes back).
    await inner.delete_child("agent/a")
    assert board.by_state()[("agents", "Crasher", "running")] == 1
    assert ("agents", "agent/a") not in {(c.supervisor, c.name) for c in board.children()}
    assert board.restarts()[("agents", "Crasher")] == 2

    # A user's restart starts the child's count afresh; the board's count still only grows.
    await inner.restart_child("agent/b")
    with pytest.raises(ActorCrashedError):
        await inner.ref("agent/b").ask(Crash(), timeout=TIMEOUT)
    with trio.fail_after(TIMEOUT):
        while board.restarts()[("agents", "Crasher")] < 3:
            await trio.sleep(0.005)
    assert board.restarts()[("agents", "Crasher")] == 3
    await root.stop()
    with trio.fail_after(TIMEOUT):
        while board.by_state().get(("root", "StatusBoard", "running")):
            await trio.sleep(0.005)  # stopped children are dropped once their stop is announced
    with pytest.raises(NotRegisteredError):
        registry.face(StatusBoard)  # withdrawn as it stopped
    assert board.lost == 0


async def test_a_board_that_falls_behind_counts_what_it_lost() -> None:
    bus = EventBus()
    board = StatusBoard(bus, Registry(), queue_size=2)
    for status in ("starting", "backoff", "starting", "running"):
        bus.publish("status.actor", {"supervisor": "s", "name": "c", "kind": "K", "status": status, "restarts": 0})
    bus.publish("status.actor", "not a supervisor's event")
    board.take_pending()
    assert board.lost == 3
    assert board.by_state() == {("s", "K", "running"): 1}


def test_a_histogram_counts_into_buckets_and_cumulates_for_prometheus() -> None:
    histogram = LatencyHistogram((0.01, 0.1, 1.0))
    for seconds in (0.001, 0.01, 0.05, 0.5, 7.0):
        histogram.observe(seconds)
    assert histogram.cumulative() == [(0.01, 2), (0.1, 3), (1.0, 4), (float("inf"), 5)]
    assert histogram.count == 5 and histogram.total == pytest.approx(7.561)
    with pytest.raises(ValueError, match="strictly increasing"):
        LatencyHistogram((0.1, 0.1))
    with pytest.raises(ValueError, match="strictly increasing"):
        LatencyHistogram(())


async def test_the_store_times_each_group_commit(nursery: trio.Nursery, tmp_path: Path) -> None:
    store = await nursery.start(Store(f"sqlite:///{tmp_path / 'vareon.db'}").run)
    assert store.commit_latency.count == 0

    def insert(session: object) -> None:
        session.add(EventRecord(source="test", kind="note", message="hello", details=None))  # type: ignore[attr-defined]

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as writers:
            for _ in range(20):
                writers.start_soon(store.write, insert)
    latency = store.commit_latency
    assert 1 <= latency.count == store.stats["batches"] <= 20
    assert latency.total > 0 and latency.cumulative()[-1][1] == latency.count
    await store.close()
