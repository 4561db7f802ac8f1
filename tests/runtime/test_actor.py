"""Actors: tell, ask, refusals, crashes, bounded mailboxes, hooks."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from pydantic import ValidationError

from vareon_runtime.actor import Actor, handles, lone_leaf
from vareon_runtime.errors import (
    ActorCrashedError,
    ActorError,
    ActorStoppedError,
    AskTimeoutError,
    ConflictError,
    UnhandledMessageError,
)
from vareon_runtime.messages import Message


class Add(Message):
    n: int


class Get(Message):
    pass


class Hang(Message):
    pass


class Crash(Message):
    pass


class Refuse(Message):
    pass


class Unknown(Message):
    pass


class Counter(Actor):
    mailbox_size = 2

    def __init__(self, log: list[str] | None = None) -> None:
        super().__init__()
        self.total = 0
        self.log = log if log is not None else []
        self.release = trio.Event()

    async def on_start(self) -> None:
        self.log.append("start")

    async def on_stop(self) -> None:
        self.log.append("stop")

    @handles(Add)
    async def add(self, msg: Add) -> int:
        self.total += msg.n
        return self.total

    @handles(Get)
    async def get(self, msg: Get) -> int:
        return self.total

    @handles(Hang)
    async def hang(self, msg: Hang) -> None:
        await self.release.wait()

    @handles(Crash)
    async def crash(self, msg: Crash) -> None:
        raise RuntimeError("boom")

    @handles(Refuse)
    async def refuse(self, msg: Refuse) -> None:
        raise ConflictError("agent is already running")


async def test_tell_then_ask_sees_the_effect(nursery: trio.Nursery) -> None:
    ref = await nursery.start(Counter().run)
    await ref.tell(Add(n=2))
    await ref.tell(Add(n=3))
    assert await ref.ask(Get(), timeout=1) == 5


async def test_unhandled_message_type_is_refused_at_the_caller(nursery: trio.Nursery) -> None:
    ref = await nursery.start(Counter().run)
    with pytest.raises(UnhandledMessageError, match=r"Counter\) has no handler for Unknown; it handles Add, Crash, Get"):
        await ref.tell(Unknown())
    with pytest.raises(UnhandledMessageError):
        await ref.ask(Unknown(), timeout=1)


async def test_ask_times_out_with_a_named_error(nursery: trio.Nursery, autojump_clock: trio.abc.Clock) -> None:
    ref = await nursery.start(Counter().run)
    with pytest.raises(AskTimeoutError, match=r"did not answer Hang within 0.5s"):
        await ref.ask(Hang(), timeout=0.5)


async def test_a_refusal_reaches_the_asker_and_the_actor_lives_on(nursery: trio.Nursery) -> None:
    ref = await nursery.start(Counter().run)
    with pytest.raises(ConflictError, match="already running"):
        await ref.ask(Refuse(), timeout=1)
    assert await ref.ask(Add(n=1), timeout=1) == 1


async def test_a_crash_reaches_the_asker_and_ends_the_actor() -> None:
    log: list[str] = []
    counter = Counter(log)
    with pytest.RaisesGroup(pytest.RaisesExc(RuntimeError, match="boom")):
        async with trio.open_nursery() as nursery:
            ref = await nursery.start(counter.run)
            with pytest.raises(ActorCrashedError, match=r"crashed handling Crash: RuntimeError\('boom'\)"):
                await ref.ask(Crash(), timeout=1)
    assert log == ["start", "stop"], "on_stop runs after a crash too"
    with pytest.raises(ActorStoppedError):
        await ref.tell(Add(n=1))


async def test_full_mailbox_applies_back_pressure(nursery: trio.Nursery) -> None:
    counter = Counter()
    ref = await nursery.start(counter.run)
    await ref.tell(Hang())  # taken by the actor, which now waits
    await trio.testing.wait_all_tasks_blocked()
    await ref.tell(Add(n=1))
    await ref.tell(Add(n=1))  # mailbox_size = 2: now full
    assert ref.mailbox_depth == 2
    blocked = trio.Event()

    async def third() -> None:
        await ref.tell(Add(n=1))
        blocked.set()

    nursery.start_soon(third)
    await trio.testing.wait_all_tasks_blocked()
    assert not blocked.is_set(), "a full mailbox makes tell wait"
    counter.release.set()
    with trio.fail_after(1):
        await blocked.wait()
    assert await ref.ask(Get(), timeout=1) == 3


async def test_stop_ends_the_actor_normally_and_runs_on_stop() -> None:
    log: list[str] = []
    counter = Counter(log)
    async with trio.open_nursery() as nursery:
        ref = await nursery.start(counter.run)
        await ref.ask(Add(n=1), timeout=1)
        counter.stop()
    assert log == ["start", "stop"]


async def test_pending_asks_fail_when_a_standalone_actor_stops(nursery: trio.Nursery) -> None:
    counter = Counter()
    results: list[BaseException] = []
    async with trio.open_nursery() as actor_nursery:
        ref = await actor_nursery.start(counter.run)
        await ref.tell(Hang())
        await trio.testing.wait_all_tasks_blocked()

        async def asker() -> None:
            try:
                await ref.ask(Get(), timeout=5)
            except ActorStoppedError as exc:
                results.append(exc)

        nursery.start_soon(asker)  # outlives the actor's nursery
        await trio.testing.wait_all_tasks_blocked()
        actor_nursery.cancel_scope.cancel()
    await trio.testing.wait_all_tasks_blocked()
    assert [str(e) for e in results] == ["Counter stopped before answering"]


class Helper(Actor):
    """Handles Hang until a background task of its own crashes."""

    def __init__(self) -> None:
        super().__init__()
        self.fail = trio.Event()

    async def on_start(self) -> None:
        self.nursery.start_soon(self.background)

    async def background(self) -> None:
        await self.fail.wait()
        raise OSError("the device went away")

    @handles(Hang)
    async def hang(self, msg: Hang) -> None:
        await trio.sleep_forever()


@pytest.mark.parametrize("how", ["cancelled", "crashed elsewhere"])
async def test_an_ask_whose_handler_is_cut_short_fails_at_once(
    nursery: trio.Nursery, autojump_clock: trio.abc.Clock, how: str
) -> None:
    actor = Helper()
    errors: list[BaseException] = []
    answered = trio.Event()

    async def asker(ref: object) -> None:
        try:
            await ref.ask(Hang(), timeout=30)  # type: ignore[attr-defined]
        except ActorError as exc:
            errors.append(exc)
        answered.set()

    with trio.fail_after(1):
        try:
            async with trio.open_nursery() as actor_nursery:
                ref = await actor_nursery.start(actor.run)
                nursery.start_soon(asker, ref)
                await trio.testing.wait_all_tasks_blocked()  # the actor is inside hang()
                if how == "cancelled":
                    actor_nursery.cancel_scope.cancel()
                else:
                    actor.fail.set()
        except BaseExceptionGroup as group:
            assert how == "crashed elsewhere"
            assert isinstance(lone_leaf(group), OSError)
        await answered.wait()
    assert len(errors) == 1
    assert isinstance(errors[0], ActorStoppedError)
    assert str(errors[0]) == "Helper stopped while handling Hang"


async def test_a_ref_is_alive_while_its_actor_runs() -> None:
    async with trio.open_nursery() as nursery:
        ref = await nursery.start(Counter().run)
        assert ref.alive
        nursery.cancel_scope.cancel()
    assert not ref.alive


def test_lone_leaf_unwraps_nested_one_member_groups_only() -> None:
    leaf = ValueError("x")
    assert lone_leaf(BaseExceptionGroup("outer", [ExceptionGroup("inner", [leaf])])) is leaf
    two = ExceptionGroup("two", [ValueError("a"), KeyError("b")])
    assert lone_leaf(ExceptionGroup("outer", [two])) is two
    assert lone_leaf(leaf) is leaf


def test_messages_are_frozen_and_strict() -> None:
    msg = Add(n=1)
    with pytest.raises(ValidationError):
        msg.n = 2  # type: ignore[misc]
    with pytest.raises(ValidationError):
        Add(n=1, extra=2)  # type: ignore[call-arg]


def test_handles_refuses_non_messages() -> None:
    with pytest.raises(TypeError, match="Message subclasses"):
        handles(int)  # type: ignore[arg-type]
