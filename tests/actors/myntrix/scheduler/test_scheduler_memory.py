"""What a burst of runs leaves behind (issue 23, point 13; decision 0029): once a burst has been
recorded nothing of its runs is alive (no control, worker, note or batch), and the book releases
the burst's memory when it empties. Counted as objects, not RSS, so the test does not depend on
the allocator or the machine."""

from __future__ import annotations

import gc
import uuid
from datetime import timedelta
from typing import Any

import trio
from sched_support import DAY, EPOCH, Module, TIMEOUT, principal, settled, task_body

from actors.kit import Jobs, Recorder, RunBook, RunControl
from actors.kit.recorder import LazyEvent, RunNote
from actors.kit.runs import RELEASE_AFTER, release_memory
from actors.myntrix.scheduler import TaskRunControl, TaskRunWorker
from actors.myntrix.scheduler.messages import TaskSpec
from actors.myntrix.scheduler.models import TASK_RUNS
from vareon_runtime.auth import Role
from vareon_runtime.bus import EventBus
from vareon_runtime.store import Store


def alive(kind: type, owners: set[str]) -> list[Any]:
    """The objects of ``kind`` still alive that belong to ``owners`` (after a full collection)."""
    gc.collect()
    found = []
    for thing in gc.get_objects():
        if isinstance(thing, kind):
            owner = getattr(thing, "owner_id", None) or getattr(thing, "owner", None)
            if owner is None and isinstance(thing, TaskRunWorker):
                owner = thing.control.owner_id
            if owner in owners:
                found.append(thing)
    return found


async def test_a_burst_of_a_thousand_runs_leaves_no_run_behind_and_is_released(
    sched_autojump: trio.abc.Clock, sched_module: Module
) -> None:
    tasks = sched_module.tasks
    count = RELEASE_AFTER
    with trio.fail_after(DAY):
        created = await tasks.create_many(
            {"tasks": [task_body("1 * * * *", name=f"t{i}", overlap="allow") for i in range(count)]},
            by=principal(Role.OPERATOR),
        )
        await trio.sleep_until(60)  # wall time 00:01:30: every task fired at 00:01
        runs = await settled(tasks)
        while tasks.runs.recorder.pending:
            await trio.sleep(0.01)
    assert len(runs) == count
    owners = set(created.ids)
    assert tasks.runs.live() == [] and tasks.runs.book.releases == 1
    for kind in (TaskRunControl, TaskRunWorker, RunNote):
        assert alive(kind, owners) == [], kind.__name__
    # What the scheduler keeps per task is a compact spec (no pydantic model, no instance dict),
    # whose strings that many tasks repeat are kept once.
    first, second = [thing for thing in gc.get_objects() if isinstance(thing, TaskSpec) and thing.id in owners][:2]
    assert not hasattr(first, "__dict__")
    assert first.schedule is second.schedule and first.action is second.action and first.timezone is second.timezone


async def test_the_recorder_lets_go_of_a_batch_once_it_is_written(
    sched_module: Module, sched_store: Store, nursery: trio.Nursery
) -> None:
    task = await sched_module.tasks.create(task_body("0 0 1 1 *"), by=principal(Role.OPERATOR))
    recorder = Recorder(sched_store, Jobs(sched_store, EventBus()), TASK_RUNS, keep=100)
    await nursery.start(recorder.run)
    notes = []
    for n in range(200):
        start = EPOCH + timedelta(minutes=n)
        notes.append(
            recorder.started(
                {"id": str(uuid.uuid4()), "task_id": task.id, "scheduled_for": start, "start_time": start,
                 "status": "succeeded", "trigger": "cron", "end_time": start},
                None,
            )
        )  # fmt: skip
    with trio.fail_after(TIMEOUT):
        for note in notes:
            await note.written.wait()
    assert recorder.stats["writes"] == 1 and recorder.pending == 0
    del notes, note
    # The store's writer still holds its last write (it has had no other): not the notes in it.
    assert alive(RunNote, {task.id}) == []


def test_the_book_releases_memory_when_it_empties_after_a_burst() -> None:
    book: RunBook[RunControl] = RunBook(release_after=3)
    small = [RunControl(owner_id=f"o{i}") for i in range(2)]
    for control in small:
        assert book.book(control)
    for control in small:
        book.release(control)
    assert book.releases == 0  # two runs are no burst

    burst = [RunControl(owner_id="same") for _ in range(2)] + [RunControl(owner_id="other")]
    for control in burst:
        assert book.book(control)
    book.release(burst[0])
    assert book.releases == 0 and len(book.live()) == 2  # not empty yet
    for control in burst[1:]:
        book.release(control)
    assert book.releases == 1 and book.live() == [] and all(control.done.is_set() for control in burst)
    assert RunBook(release_after=None).release_after is None
    assert release_memory() in (True, False)  # False where the C library has no malloc_trim


async def test_a_lazy_event_wakes_who_waits_and_answers_at_once_once_set() -> None:
    event = LazyEvent()
    woken: list[str] = []

    async def waiter(name: str) -> None:
        await event.wait()
        woken.append(name)

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(waiter, "a")
            nursery.start_soon(waiter, "b")
            await trio.sleep(0.01)
            assert woken == [] and not event.is_set()
            event.set()
        assert sorted(woken) == ["a", "b"] and event.is_set()
        done = LazyEvent()
        done.set()
        await done.wait()  # set before anyone waited: no trio event was ever made
        assert done._event is None
