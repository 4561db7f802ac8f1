"""Fixtures of the device tests (the store fixture comes from tests/actors/myntrix/conftest.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import trio
from device_support import DeviceModuleRun, start_device_module

from vareon_runtime.bus import EventBus
from vareon_runtime.store import Store


@pytest.fixture
def device_bus() -> EventBus:
    return EventBus()


@pytest.fixture
async def device_module(nursery: trio.Nursery, store: Store, device_bus: EventBus) -> AsyncIterator[DeviceModuleRun]:
    """The devices module running on the test's store and bus; stopped after the test."""
    run = await start_device_module(nursery, store, device_bus)
    yield run
    await run.stop()
