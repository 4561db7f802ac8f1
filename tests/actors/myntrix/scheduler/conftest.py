"""Fixtures of the scheduler tests (see sched_support): a real store on a SQLite file, a
simulated wall clock, a private actions registry, and the module under a root supervisor."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
import trio.testing
from sched_support import Module, SchedKit, SimClock, registry_with

from vareon_runtime.store import Store


class StillWhileTheStoreWorks(trio.abc.Instrument):
    """Under an autojump ``MockClock``: no jump while a store thread is working.

    The store works in threads, which trio's idle detection does not see: with the plain
    autojump, simulated time would leap to the next deadline (an hour of the scheduler's capped
    sleep, a test's bound) while a write is still in flight, so the test's outcome would depend
    on how fast the machine is. After every task step the clock's threshold is set to infinity
    while the store has a thread working, and back to the clock's own threshold once it has none.
    """

    def __init__(self, clock: trio.testing.MockClock, store: Store) -> None:
        self.clock = clock
        self.store = store
        self.threshold = clock.autojump_threshold

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        wanted = math.inf if self.store.threads_working else self.threshold
        if self.clock.autojump_threshold != wanted:
            self.clock.autojump_threshold = wanted


@pytest.fixture
async def sched_store(nursery: trio.Nursery, tmp_path: Path) -> AsyncIterator[Store]:
    store = Store(f"sqlite:///{tmp_path / 'data' / 'vareon.db'}", sqlite_synchronous="normal")
    clock = trio.lowlevel.current_clock()
    still = None
    if isinstance(clock, trio.testing.MockClock) and clock.autojump_threshold < math.inf:
        still = StillWhileTheStoreWorks(clock, store)
        trio.lowlevel.add_instrument(still)
    await nursery.start(store.run)
    yield store
    await store.close()
    if still is not None:
        trio.lowlevel.remove_instrument(still)


@pytest.fixture
def sched_clock() -> SimClock:
    return SimClock()


@pytest.fixture
def sched_kit(nursery: trio.Nursery, sched_store: Store, sched_clock: SimClock) -> SchedKit:
    actions, record = registry_with(sched_clock)
    return SchedKit(sched_store, nursery, sched_clock, actions, record)


@pytest.fixture
async def sched_module(sched_kit: SchedKit) -> AsyncIterator[Module]:
    module = await sched_kit.start()
    yield module
    await module.stop()


@pytest.fixture
def sched_autojump() -> trio.testing.MockClock:
    """trio's autojump clock; ``sched_store`` holds it still while the store's threads work
    (:class:`StillWhileTheStoreWorks`), so simulated time passes only when every task waits
    for time itself, however slow the machine.
    """
    return trio.testing.MockClock(autojump_threshold=0)
