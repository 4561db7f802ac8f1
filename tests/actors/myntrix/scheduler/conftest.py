"""Fixtures of the scheduler tests (see sched_support): a real store on a SQLite file, a
simulated wall clock, a private actions registry, and the module under a root supervisor."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
import trio.testing
from sched_support import Module, SchedKit, SimClock, registry_with

from vareon_runtime.store import Store


@pytest.fixture
async def sched_store(nursery: trio.Nursery, tmp_path: Path) -> AsyncIterator[Store]:
    store: Store = await nursery.start(
        Store(f"sqlite:///{tmp_path / 'data' / 'vareon.db'}", sqlite_synchronous="normal").run
    )
    yield store
    await store.close()


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
    """trio's autojump clock, jumping only once every task has been idle for 5 ms of real time.

    The store works in threads: with the plain ``autojump_clock`` (threshold 0) every commit
    would let simulated time leap to the next deadline while the write is still in flight, so a
    day of minutes would outrun its own runs. Simulated time still passes in milliseconds.
    """
    return trio.testing.MockClock(autojump_threshold=0.005)
