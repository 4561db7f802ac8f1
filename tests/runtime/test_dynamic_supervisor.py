"""The dynamic supervisor: many temporary children started on demand, crashes contained and
logged, every child cancelled at once on stop, a child that overstays its shutdown reported."""

from __future__ import annotations

import logging

import pytest
import trio
import trio.testing

from vareon_runtime.dynamic_supervisor import DynamicSupervisor
from vareon_runtime.errors import DuplicateChildError, SupervisorStoppedError
from vareon_runtime.supervisor import ChildSpec, ChildStatus, Supervisor

TIMEOUT = 10.0


class Sleeper:
    """Waits until let go or cancelled; notes how it ended."""

    def __init__(self, ends: list[str], label: str, *, cleanup: float = 0.0) -> None:
        self.ends = ends
        self.label = label
        self.cleanup = cleanup
        self.running = trio.Event()
        self.go = trio.Event()

    async def run(self) -> None:
        self.running.set()
        try:
            await self.go.wait()
            self.ends.append(f"{self.label} done")
        except trio.Cancelled:
            with trio.CancelScope(shield=True):
                await trio.sleep(self.cleanup)
            self.ends.append(f"{self.label} cancelled")
            raise


class Crasher:
    async def run(self) -> None:
        await trio.sleep(0)
        raise ValueError("boom")


async def started(nursery: trio.Nursery, shutdown: float = 5.0) -> DynamicSupervisor:
    supervisor: DynamicSupervisor = await nursery.start(DynamicSupervisor("runs", shutdown=shutdown).run)
    return supervisor


async def test_children_start_at_once_run_side_by_side_and_are_forgotten_when_they_end(nursery: trio.Nursery) -> None:
    supervisor = await started(nursery)
    ends: list[str] = []
    workers = [Sleeper(ends, f"w{i}") for i in range(100)]
    for i, worker in enumerate(workers):
        supervisor.start_child(f"w{i}", worker)
    assert len(supervisor) == 100 and "w7" in supervisor and supervisor.started == 100
    with trio.fail_after(TIMEOUT):
        for worker in workers:
            await worker.running.wait()
        info = supervisor.which_children()
        assert [child.name for child in info] == [f"w{i}" for i in range(100)]
        assert {child.status for child in info} == {ChildStatus.RUNNING} and info[0].kind == "Sleeper"
        workers[3].go.set()
        while "w3" in supervisor:
            await trio.sleep(0.01)
    assert ends == ["w3 done"] and len(supervisor) == 99


async def test_a_crash_is_logged_and_counted_and_its_siblings_carry_on(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    supervisor = await started(nursery)
    ends: list[str] = []
    sibling = Sleeper(ends, "sibling")
    supervisor.start_child("sibling", sibling)
    supervisor.start_child("crasher", Crasher())
    with trio.fail_after(TIMEOUT):
        while supervisor.crashes == 0:
            await trio.sleep(0.01)
    assert "crasher" not in supervisor and "sibling" in supervisor
    assert supervisor.last_error == "crasher: ValueError: boom"
    record = next(r for r in caplog.records if "crashed" in r.getMessage())
    assert record.levelno == logging.ERROR and record.exc_info is not None
    sibling.go.set()
    with trio.fail_after(TIMEOUT):
        while "sibling" in supervisor:
            await trio.sleep(0.01)
    assert ends == ["sibling done"]


async def test_a_live_name_is_refused_and_can_be_used_again_once_it_ended(nursery: trio.Nursery) -> None:
    supervisor = await started(nursery)
    first = Sleeper([], "first")
    supervisor.start_child("a", first)
    with pytest.raises(DuplicateChildError, match="already has a child named 'a'"):
        supervisor.start_child("a", Sleeper([], "second"))
    first.go.set()
    with trio.fail_after(TIMEOUT):
        while "a" in supervisor:
            await trio.sleep(0.01)
    supervisor.start_child("a", Sleeper([], "third"))
    assert "a" in supervisor


async def test_nothing_starts_before_the_supervisor_runs_or_once_it_stops() -> None:
    supervisor = DynamicSupervisor("runs", shutdown=1.0)
    with pytest.raises(SupervisorStoppedError, match="not running"):
        supervisor.start_child("a", Sleeper([], "a"))
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            await nursery.start(supervisor.run)
            await supervisor.stop()
    with pytest.raises(SupervisorStoppedError, match="not running"):
        supervisor.start_child("b", Sleeper([], "b"))
    with pytest.raises(SupervisorStoppedError, match="make a new one"):
        await supervisor.run()


async def test_stopping_cancels_every_child_at_once_and_waits_for_their_cleanup(autojump_clock: trio.testing.MockClock) -> None:
    ends: list[str] = []
    workers = [Sleeper(ends, f"w{i}", cleanup=1.0) for i in range(50)]
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            supervisor = await started(nursery, shutdown=5.0)
            for i, worker in enumerate(workers):
                supervisor.start_child(f"w{i}", worker)
            for worker in workers:
                await worker.running.wait()
            began = trio.current_time()
            await supervisor.stop()
            took = trio.current_time() - began
    assert sorted(ends) == sorted(f"w{i} cancelled" for i in range(50))
    assert took == pytest.approx(1.0), "all at once: one cleanup's time, not fifty"


async def test_a_child_that_outstays_the_shutdown_is_reported(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    ends: list[str] = []
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            supervisor = await started(nursery, shutdown=2.0)
            slow = Sleeper(ends, "slow", cleanup=6.0)
            supervisor.start_child("slow", slow)
            await slow.running.wait()
            nursery.cancel_scope.cancel()
    assert ends == ["slow cancelled"], "trio cannot kill a task: it ends after its shielded cleanup"
    assert any("1 children did not stop within 2s" in r.getMessage() for r in caplog.records if r.levelno == logging.ERROR)


async def test_under_a_supervisor_it_is_stopped_with_its_children() -> None:
    runs = DynamicSupervisor("task-runs", shutdown=5.0)
    parent = Supervisor("module", [ChildSpec("task-runs", lambda: runs, shutdown=6.0)])
    ends: list[str] = []
    worker = Sleeper(ends, "run")
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            await nursery.start(parent.run)
            runs.start_child("run", worker)
            await worker.running.wait()
            assert parent.child("task-runs").kind == "DynamicSupervisor"
            await parent.stop()
    assert ends == ["run cancelled"] and len(runs) == 0
