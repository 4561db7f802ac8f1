"""Fixtures of the Myntrix tests: a bus, a registry, and the agents module under a root
supervisor on the store (see agents_support; the store comes from tests/actors/conftest.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
from agents_support import AgentKit, Module

from actors.myntrix.agents import Agents
from vareon_runtime.bus import EventBus
from vareon_runtime.registry import Registry
from vareon_runtime.store import Store


@pytest.fixture
async def kit(nursery: trio.Nursery, tmp_path: Path, store: Store) -> AgentKit:
    return AgentKit(tmp_path, store, EventBus(), Registry(), nursery)


@pytest.fixture
async def module(kit: AgentKit) -> AsyncIterator[Module]:
    module = await kit.start_module()
    yield module
    await module.stop()


@pytest.fixture
def agents(module: Module) -> Agents:
    return module.agents
