"""The name registry."""

from __future__ import annotations

import pytest
import trio

from vareon_runtime.actor import Actor
from vareon_runtime.errors import NameTakenError, NotRegisteredError
from vareon_runtime.registry import Registry


async def test_register_lookup_unregister(nursery: trio.Nursery) -> None:
    registry = Registry()
    ref = await nursery.start(Actor().run)
    registry.register("agent/1", ref)
    registry.register("device/1", ref)
    assert registry.lookup("agent/1") is ref
    assert registry.count_by_kind() == {"agent": 1, "device": 1}
    with pytest.raises(NameTakenError, match="'agent/1' is already registered"):
        registry.register("agent/1", ref)
    registry.unregister("agent/1")
    assert "agent/1" not in registry
    with pytest.raises(NotRegisteredError, match="no actor is registered as 'agent/1'"):
        registry.lookup("agent/1")
    with pytest.raises(NotRegisteredError):
        registry.unregister("agent/1")


async def test_count_by_kind_counts_only_live_actors(nursery: trio.Nursery) -> None:
    registry = Registry()
    async with trio.open_nursery() as actor_nursery:
        stopped = await actor_nursery.start(Actor().run)
        actor_nursery.cancel_scope.cancel()
    live = await nursery.start(Actor().run)
    registry.register("agent/1", live)
    registry.register("agent/2", stopped)
    registry.register("device/1", stopped)
    assert registry.count_by_kind() == {"agent": 1}, "stopped actors stay registered but are not live"
    assert len(registry) == 3
