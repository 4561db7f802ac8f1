"""Supervision with OTP semantics: strategies, restart types, intensity, shutdown, backoff."""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Callable
from typing import Any

import pytest
import trio
import trio.testing

from vareon_runtime.actor import Actor, handles
from vareon_runtime.bus import Event, EventBus, Subscription
from vareon_runtime.errors import (
    ActorCrashedError,
    ActorStoppedError,
    DuplicateChildError,
    NotRegisteredError,
    RestartIntensityError,
    SupervisorStoppedError,
    UnknownChildError,
)
from vareon_runtime.messages import Message
from vareon_runtime.registry import Registry
from vareon_runtime.supervisor import Backoff, ChildSpec, ChildStatus, Restart, Supervisor


class Crash(Message):
    pass


class Quit(Message):
    pass


class Whoami(Message):
    pass


class Worker(Actor):
    """Records its life in a shared journal so tests can see starts, stops and incarnations."""

    def __init__(self, name: str, journal: list[str], stop_delay: float = 0.0) -> None:
        super().__init__()
        self.label = name
        self.journal = journal
        self.stop_delay = stop_delay
        journal.append(f"new {name}")

    async def on_start(self) -> None:
        self.journal.append(f"start {self.label}")

    async def on_stop(self) -> None:
        if self.stop_delay:
            await trio.sleep(self.stop_delay)
        self.journal.append(f"stop {self.label}")

    @handles(Crash)
    async def crash(self, msg: Crash) -> None:
        raise RuntimeError(f"{self.label} crashed")

    @handles(Quit)
    async def quit(self, msg: Quit) -> None:
        self.stop()

    @handles(Whoami)
    async def whoami(self, msg: Whoami) -> int:
        return id(self)


def spec(name: str, journal: list[str], **kwargs: object) -> ChildSpec:
    stop_delay = kwargs.pop("stop_delay", 0.0)
    factory: Callable[[], Worker] = lambda: Worker(name, journal, stop_delay)  # type: ignore[arg-type]  # noqa: E731
    return ChildSpec(name=name, factory=factory, **kwargs)  # type: ignore[arg-type]


async def crash(sup: Supervisor, name: str) -> None:
    with pytest.raises(ActorCrashedError):
        await sup.ref(name).ask(Crash(), timeout=1)


async def wait_restarted(sup: Supervisor, name: str, restarts: int) -> None:
    with trio.fail_after(60):
        while not (sup.child(name).restarts == restarts and sup.child(name).status is ChildStatus.RUNNING):
            await trio.sleep(0.01)


async def settle() -> None:
    await trio.testing.wait_all_tasks_blocked()


def starts(journal: list[str]) -> list[str]:
    return [line for line in journal if line.startswith(("start", "stop"))]


async def next_status(events: Subscription, name: str, status: ChildStatus) -> None:
    """Wait until the supervisor publishes ``status`` for the child ``name``."""
    while True:
        item = await events.receive()
        if isinstance(item, Event) and item.data["name"] == name and item.data["status"] == status.value:
            return


async def test_one_for_one_restarts_only_the_crashed_child(nursery: trio.Nursery) -> None:
    journal: list[str] = []
    sup = await nursery.start(Supervisor("s", [spec("a", journal), spec("b", journal)]).run)
    b_before = await sup.ref("b").ask(Whoami())
    journal.clear()
    await crash(sup, "a")
    await settle()
    assert starts(journal) == ["stop a", "start a"]
    assert await sup.ref("b").ask(Whoami()) == b_before
    assert sup.child("a").restarts == 1 and sup.child("a").status is ChildStatus.RUNNING
    assert sup.child("a").last_error == "RuntimeError: a crashed"


async def test_one_for_all_restarts_every_child_in_order(nursery: trio.Nursery) -> None:
    journal: list[str] = []
    children = [spec(n, journal) for n in "abc"]
    sup = await nursery.start(Supervisor("s", children, strategy="one_for_all").run)
    journal.clear()
    await crash(sup, "b")
    await settle()
    assert starts(journal) == ["stop b", "stop c", "stop a", "start a", "start b", "start c"]


async def test_rest_for_one_restarts_the_child_and_those_started_after_it(nursery: trio.Nursery) -> None:
    journal: list[str] = []
    children = [spec(n, journal) for n in "abc"]
    sup = await nursery.start(Supervisor("s", children, strategy="rest_for_one").run)
    journal.clear()
    await crash(sup, "b")
    await settle()
    assert starts(journal) == ["stop b", "stop c", "start b", "start c"]


@pytest.mark.parametrize(
    ("restart", "how", "restarted"),
    [
        (Restart.PERMANENT, "crash", True),
        (Restart.PERMANENT, "normal", True),
        (Restart.TRANSIENT, "crash", True),
        (Restart.TRANSIENT, "normal", False),
        (Restart.TEMPORARY, "crash", False),
        (Restart.TEMPORARY, "normal", False),
    ],
)
async def test_restart_types(nursery: trio.Nursery, restart: Restart, how: str, restarted: bool) -> None:
    journal: list[str] = []
    sup = await nursery.start(Supervisor("s", [spec("a", journal, restart=restart)]).run)
    ref = sup.ref("a")
    journal.clear()
    if how == "crash":
        with pytest.raises(ActorCrashedError):
            await ref.ask(Crash(), timeout=1)
    else:
        await ref.tell(Quit())
    await settle()
    assert ("start a" in journal) is restarted
    if restarted:
        assert sup.child("a").status is ChildStatus.RUNNING
    elif restart is Restart.TEMPORARY:
        assert "a" not in sup, "a temporary child is removed once it ends"
    else:
        assert sup.child("a").status is ChildStatus.STOPPED
        with pytest.raises(ActorStoppedError):
            await ref.tell(Whoami())


async def test_intensity_exceeded_stops_children_and_escalates(autojump_clock: trio.abc.Clock) -> None:
    journal: list[str] = []
    sup = Supervisor("s", [spec("a", journal), spec("b", journal)], max_restarts=2, period=10, backoff=Backoff(0, 0))
    expected = r"s gave up: 3 restarts within 10s \(max_restarts=2\); last, a exited with RuntimeError: a crashed"
    with pytest.RaisesGroup(pytest.RaisesExc(RestartIntensityError, match=expected)):
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
            for _ in range(3):
                await crash(sup, "a")
                await settle()
            await trio.sleep_forever()
    # a's third crash ended it; giving up stops the rest and starts nothing again.
    assert journal[-2:] == ["stop a", "stop b"]


async def test_crashes_spread_over_more_than_the_period_do_not_escalate(
    nursery: trio.Nursery, autojump_clock: trio.abc.Clock
) -> None:
    journal: list[str] = []
    sup = await nursery.start(Supervisor("s", [spec("a", journal)], max_restarts=2, period=10).run)
    for _ in range(6):
        await crash(sup, "a")
        await trio.sleep(11)
    assert sup.child("a").status is ChildStatus.RUNNING
    assert sup.child("a").restarts == 6


async def test_a_child_supervisor_that_gives_up_is_restarted_by_its_parent(
    nursery: trio.Nursery, autojump_clock: trio.abc.Clock
) -> None:
    journal: list[str] = []
    inner_instances: list[Supervisor] = []

    def make_inner() -> Supervisor:
        inner = Supervisor("inner", [spec("w", journal)], max_restarts=0, backoff=Backoff(0, 0))
        inner_instances.append(inner)
        return inner

    outer = await nursery.start(Supervisor("outer", [ChildSpec("inner", make_inner, shutdown=30)]).run)
    await crash(inner_instances[-1], "w")
    await settle()
    assert len(inner_instances) == 2, "escalation reached the parent, which restarted the child supervisor"
    assert outer.child("inner").last_error is not None
    assert "inner gave up" in outer.child("inner").last_error
    assert inner_instances[-1].child("w").status is ChildStatus.RUNNING


async def test_shutdown_is_in_reverse_start_order(autojump_clock: trio.abc.Clock) -> None:
    journal: list[str] = []
    sup = Supervisor("s", [spec(n, journal, stop_delay=1.0) for n in "abc"])
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        await sup.stop()
    assert starts(journal) == ["start a", "start b", "start c", "stop c", "stop b", "stop a"]


async def test_a_child_that_will_not_stop_is_abandoned_after_its_timeout(autojump_clock: trio.abc.Clock) -> None:
    journal: list[str] = []
    sup = Supervisor("s", [spec("quick", journal), spec("stuck", journal, stop_delay=3600, shutdown=2.0)])
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        began = trio.current_time()
        await sup.stop()
    assert trio.current_time() - began < 5, "bounded by the stuck child's 2 s shutdown, not its 3600 s"
    assert "stop stuck" not in journal
    assert journal[-1] == "stop quick"


async def test_dynamic_children_and_registry(nursery: trio.Nursery) -> None:
    journal: list[str] = []
    registry = Registry()
    sup = await nursery.start(Supervisor("agents", registry=registry, max_restarts=None).run)
    ref = await sup.start_child(spec("agent/1", journal))
    assert registry.lookup("agent/1") is ref
    with pytest.raises(DuplicateChildError, match="already has a child named 'agent/1'"):
        await sup.start_child(spec("agent/1", journal))
    await crash(sup, "agent/1")
    await settle()
    assert registry.lookup("agent/1") is ref, "the ref is stable across restarts"
    await sup.delete_child("agent/1")
    assert journal[-1] == "stop agent/1"
    with pytest.raises(NotRegisteredError):
        registry.lookup("agent/1")
    with pytest.raises(UnknownChildError):
        sup.child("agent/1")


async def test_a_child_that_fails_to_start_is_not_added(nursery: trio.Nursery) -> None:
    class Broken(Actor):
        async def on_start(self) -> None:
            raise OSError("no such executable: /bin/nope")

    sup = await nursery.start(Supervisor("s").run)
    with pytest.raises(OSError, match="no such executable"):
        await sup.start_child(ChildSpec("x", Broken))
    assert "x" not in sup


async def test_initial_start_failure_stops_the_started_children_and_raises() -> None:
    journal: list[str] = []

    class Broken(Actor):
        async def on_start(self) -> None:
            raise OSError("port in use")

    sup = Supervisor("s", [spec("a", journal), ChildSpec("x", Broken)])
    with pytest.RaisesGroup(pytest.RaisesExc(OSError, match="port in use")):
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
    assert journal[-1] == "stop a"


async def test_messages_queued_during_a_restart_reach_the_next_incarnation(nursery: trio.Nursery) -> None:
    journal: list[str] = []
    sup = await nursery.start(Supervisor("s", [spec("a", journal)]).run)
    ref = sup.ref("a")
    first = await ref.ask(Whoami())
    await ref.tell(Crash())
    answer = await ref.ask(Whoami(), timeout=1)  # queued behind the crash
    assert answer != first


async def test_backoff_grows_exponentially_with_jitter_and_a_cap(
    nursery: trio.Nursery, autojump_clock: trio.abc.Clock
) -> None:
    journal: list[str] = []
    bus = EventBus()
    events = bus.subscribe("status.actor", queue_size=1000)
    sup = await nursery.start(
        Supervisor(
            "s", [spec("a", journal, period=1000)], max_restarts=None, backoff=Backoff(1.0, 4.0),
            bus=bus, rng=random.Random(7),
        ).run
    )
    delays = []
    for n in range(1, 6):
        crashed_at = trio.current_time()
        await crash(sup, "a")
        await wait_restarted(sup, "a", n)
        delays.append(trio.current_time() - crashed_at)
    assert delays[0] < 0.05, "the first restart is immediate"
    for got, ceiling in zip(delays[1:], [1.0, 2.0, 4.0, 4.0], strict=True):
        assert ceiling / 2 <= got <= ceiling + 0.05
    statuses = []
    while True:
        try:
            item = events.receive_nowait()
        except trio.WouldBlock:
            break
        assert isinstance(item, Event)
        statuses.append(item.data["status"])
    assert "backoff" in statuses and statuses[-1] == "running"


async def test_a_child_past_its_own_limit_is_failed_visible_and_can_be_started_again(
    nursery: trio.Nursery, autojump_clock: trio.abc.Clock
) -> None:
    journal: list[str] = []
    sup = await nursery.start(
        Supervisor(
            "agents", [spec("a", journal, max_restarts=2, period=60), spec("b", journal)],
            max_restarts=None, backoff=Backoff(0.1, 1.0),
        ).run
    )
    ref = sup.ref("a")
    for n in range(1, 3):
        await crash(sup, "a")
        await wait_restarted(sup, "a", n)
    await crash(sup, "a")
    while sup.child("a").status is not ChildStatus.FAILED:
        await trio.sleep(0.01)
    info = sup.child("a")
    assert info.status is ChildStatus.FAILED
    assert info.last_error is not None
    assert "a gave up after 3 restarts within 60s (max_restarts=2); last exit: RuntimeError: a crashed" in info.last_error
    with pytest.raises(ActorStoppedError):
        await ref.tell(Whoami())
    assert sup.child("b").status is ChildStatus.RUNNING, "siblings carry on"
    await sup.restart_child("a")
    assert sup.child("a").status is ChildStatus.RUNNING
    assert await ref.ask(Whoami(), timeout=1), "the old ref works again"


async def test_terminate_and_restart_child_are_symmetric(nursery: trio.Nursery) -> None:
    journal: list[str] = []
    sup = await nursery.start(Supervisor("s", [spec("a", journal)]).run)
    await sup.terminate_child("a")
    assert sup.child("a").status is ChildStatus.STOPPED
    with pytest.raises(ActorStoppedError):
        await sup.ref("a").ask(Whoami(), timeout=1)
    await sup.restart_child("a")
    assert sup.child("a").status is ChildStatus.RUNNING
    assert await sup.ref("a").ask(Whoami(), timeout=1)


async def test_a_child_that_crashes_as_it_starts_is_never_shown_running(
    nursery: trio.Nursery, autojump_clock: trio.abc.Clock
) -> None:
    class DiesAtOnce(Actor):
        async def run(self, *, task_status: trio.TaskStatus[object] = trio.TASK_STATUS_IGNORED) -> None:
            task_status.started(None)
            raise RuntimeError("died on arrival")

    sup = await nursery.start(Supervisor("s", max_restarts=None, backoff=Backoff(0.1, 1.0)).run)
    await sup.start_child(ChildSpec("x", DiesAtOnce, max_restarts=2, period=60))
    with trio.fail_after(30):
        while sup.child("x").status is not ChildStatus.FAILED:
            assert sup.child("x").status is not ChildStatus.RUNNING or sup.child("x").restarts < 3
            await trio.sleep(0.01)
    await settle()
    assert sup.child("x").status is ChildStatus.FAILED


@pytest.mark.parametrize("op", ["terminate_child", "delete_child", "restart_child"])
@pytest.mark.parametrize("strategy", ["one_for_all", "rest_for_one"])
async def test_a_user_op_on_the_crashed_child_during_a_group_restart_strands_no_sibling(
    autojump_clock: trio.abc.Clock, strategy: str, op: str
) -> None:
    journal: list[str] = []
    bus = EventBus()
    events = bus.subscribe("status.actor", queue_size=1000)
    children = [spec("a", journal), spec("b", journal, stop_delay=0.2), spec("c", journal, stop_delay=0.2)]
    sup = Supervisor("s", children, strategy=strategy, bus=bus)
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
            await crash(sup, "a")
            await next_status(events, "c", ChildStatus.STOPPING)  # the group restart is under way
            await getattr(sup, op)("a")
            await settle()
            assert [sup.child(name).status for name in "bc"] == [ChildStatus.RUNNING] * 2
            if op == "delete_child":
                assert "a" not in sup
            else:
                expected = ChildStatus.RUNNING if op == "restart_child" else ChildStatus.STOPPED
                assert sup.child("a").status is expected
            await sup.stop()


async def test_stopping_the_crashed_child_during_its_backoff_cancels_the_group_restart(
    autojump_clock: trio.abc.Clock,
) -> None:
    journal: list[str] = []
    bus = EventBus()
    events = bus.subscribe("status.actor", queue_size=1000)
    sup = Supervisor(
        "s", [spec(n, journal) for n in "abc"], strategy="one_for_all", backoff=Backoff(1.0, 4.0), bus=bus,
    )
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
            await crash(sup, "a")
            await wait_restarted(sup, "a", 1)
            siblings = [await sup.ref(name).ask(Whoami()) for name in "bc"]
            await crash(sup, "a")
            await next_status(events, "a", ChildStatus.BACKOFF)
            await sup.terminate_child("a")
            await trio.sleep(10)  # well past the backoff: nothing may happen meanwhile
            assert sup.child("a").status is ChildStatus.STOPPED
            assert [sup.child(name).status for name in "bc"] == [ChildStatus.RUNNING] * 2
            assert [await sup.ref(name).ask(Whoami()) for name in "bc"] == siblings, "b and c were left alone"
            await sup.stop()


async def test_a_sibling_stopped_during_the_backoff_stays_stopped_after_the_group_restart(
    autojump_clock: trio.abc.Clock,
) -> None:
    journal: list[str] = []
    bus = EventBus()
    events = bus.subscribe("status.actor", queue_size=1000)
    sup = Supervisor(
        "s", [spec(n, journal) for n in "abc"], strategy="one_for_all", backoff=Backoff(1.0, 4.0), bus=bus,
    )
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
            await crash(sup, "a")
            await wait_restarted(sup, "a", 1)
            await crash(sup, "a")
            await next_status(events, "a", ChildStatus.BACKOFF)
            await sup.terminate_child("b")
            journal.clear()
            await wait_restarted(sup, "a", 2)
            assert starts(journal) == ["stop c", "start a", "start c"]
            assert sup.child("b").status is ChildStatus.STOPPED
            assert sup.child("c").status is ChildStatus.RUNNING
            await sup.stop()


@pytest.mark.parametrize("strategy", ["one_for_all", "rest_for_one"])
async def test_a_temporary_child_is_not_restarted_by_a_group_restart(nursery: trio.Nursery, strategy: str) -> None:
    journal: list[str] = []
    children = [spec("perm", journal), spec("tmp", journal, restart=Restart.TEMPORARY)]
    sup = await nursery.start(Supervisor("s", children, strategy=strategy).run)
    tmp_ref = sup.ref("tmp")
    journal.clear()
    with trio.fail_after(5):
        await crash(sup, "perm")
        await settle()
    assert starts(journal) == ["stop perm", "stop tmp", "start perm"]
    assert "tmp" not in sup, "a temporary child is terminated and forgotten"
    assert sup.child("perm").status is ChildStatus.RUNNING
    with pytest.raises(ActorStoppedError):
        await tmp_ref.tell(Whoami())


class Stubborn:
    """Ignores cancellation until released: it outlives any shutdown budget."""

    def __init__(self, number: int, release: trio.Event, ended: list[int]) -> None:
        self.number = number
        self.release = release
        self.ended = ended

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        try:
            await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True):
                await self.release.wait()
            self.ended.append(self.number)


async def test_an_abandoned_incarnation_neither_ends_nor_hides_the_next_one(
    autojump_clock: trio.abc.Clock, log_records: Any
) -> None:
    releases: list[trio.Event] = []
    ended: list[int] = []

    def factory() -> Stubborn:
        releases.append(trio.Event())
        return Stubborn(len(releases), releases[-1], ended)

    sup = Supervisor("s", [ChildSpec("c", factory, shutdown=0.1)])
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            try:
                await nursery.start(sup.run)
                await sup.terminate_child("c")  # number 1 ignores it and is abandoned
                await sup.restart_child("c")  # number 2 starts while number 1 still runs
                releases[0].set()
                await settle()
                assert ended == [1]
                assert sup.child("c").status is ChildStatus.RUNNING, "the end of number 1 is not number 2's"
                began = trio.current_time()
                await sup.terminate_child("c")
                assert trio.current_time() - began >= 0.1, "terminate_child waited for number 2 itself"
                assert ended == [1]
                assert sup.child("c").abandoned == 1, "an abandoned incarnation that still runs is visible"
                errors = log_records.messages(logging.ERROR)
                assert sum("c did not stop within 0.1s" in m for m in errors) == 2
                assert any("started c while an abandoned incarnation of it still runs" in m for m in errors)
                releases[1].set()
                await settle()
                assert sup.child("c").abandoned == 0
                await sup.stop()
            finally:
                for release in releases:
                    release.set()
    assert ended == [1, 2]


async def test_children_cannot_be_started_once_the_supervisor_stops(autojump_clock: trio.abc.Clock) -> None:
    journal: list[str] = []
    bus = EventBus()
    events = bus.subscribe("status.actor", queue_size=1000)
    sup = Supervisor("s", [spec("slow", journal, stop_delay=0.5)], bus=bus)
    with pytest.raises(SupervisorStoppedError, match=r"cannot start x: supervisor s is not running \(start it"):
        await sup.start_child(spec("x", journal))
    refused: list[str] = []

    async def late(start: Callable[[], Any]) -> None:
        try:
            await start()
        except SupervisorStoppedError as exc:
            refused.append(str(exc))

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
            nursery.start_soon(sup.stop)
            await next_status(events, "slow", ChildStatus.STOPPING)
            # Both wait for the supervisor's lock while it stops its children, then are refused.
            nursery.start_soon(late, lambda: sup.start_child(spec("late", journal)))
            nursery.start_soon(late, lambda: sup.restart_child("slow"))
    # Whether they get the lock before run() has returned or just after is up to trio's scheduler.
    assert len(refused) == 2
    for name, message in zip(("late", "slow"), sorted(refused), strict=True):
        assert re.fullmatch(rf"cannot start {name}: supervisor s (is stopping|has stopped)", message)
    assert "late" not in sup
    assert sup.child("slow").status is ChildStatus.STOPPED
    with pytest.raises(SupervisorStoppedError, match="cannot start x: supervisor s has stopped"):
        await sup.start_child(spec("x", journal))
    with pytest.raises(SupervisorStoppedError, match="cannot start slow: supervisor s has stopped"):
        await sup.restart_child("slow")


async def test_the_registry_counts_only_live_actors(nursery: trio.Nursery) -> None:
    journal: list[str] = []
    registry = Registry()
    sup = await nursery.start(Supervisor("s", [spec("agent/1", journal), spec("agent/2", journal)], registry=registry).run)
    assert registry.count_by_kind() == {"agent": 2}
    await sup.terminate_child("agent/2")
    assert not sup.ref("agent/2").alive
    assert registry.count_by_kind() == {"agent": 1}, "a stopped actor stays registered but is not live"
    await sup.restart_child("agent/2")
    assert registry.count_by_kind() == {"agent": 2}


async def test_last_error_shows_the_leaf_of_a_nested_exception_group(nursery: trio.Nursery) -> None:
    class Nested(Actor):
        @handles(Crash)
        async def crash(self, msg: Crash) -> None:
            raise ExceptionGroup("outer", [ExceptionGroup("inner", [OSError("port gone")])])

    sup = await nursery.start(Supervisor("s", [ChildSpec("n", Nested)]).run)
    with trio.fail_after(5):
        await crash(sup, "n")
        await settle()
    assert sup.child("n").last_error == "OSError: port gone"
