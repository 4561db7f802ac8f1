"""Fixtures of the Myntrix tests: a real store on a temporary SQLite file, a bus, a registry, and
the module under a root supervisor (see myntrix_support)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
from myntrix_support import Kit, Module

from actors.myntrix import Agents
from vareon_runtime.bus import EventBus
from vareon_runtime.registry import Registry
from vareon_runtime.store import Store


@pytest.fixture
async def store(nursery: trio.Nursery, tmp_path: Path) -> AsyncIterator[Store]:
    store: Store = await nursery.start(
        Store(f"sqlite:///{tmp_path / 'data' / 'vareon.db'}", sqlite_synchronous="normal").run
    )
    yield store
    await store.close()


@pytest.fixture
async def kit(nursery: trio.Nursery, tmp_path: Path, store: Store) -> Kit:
    return Kit(tmp_path, store, EventBus(), Registry(), nursery)


@pytest.fixture
async def module(kit: Kit) -> AsyncIterator[Module]:
    module = await kit.start_module()
    yield module
    await module.stop()


@pytest.fixture
def agents(module: Module) -> Agents:
    return module.agents
