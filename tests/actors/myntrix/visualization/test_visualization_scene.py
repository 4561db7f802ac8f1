"""The 3D scene: stable positions, colours by status, links, and the feed on the bus."""

from __future__ import annotations

import math
import uuid
from typing import Any

import pytest
import trio
import trio.testing
from sqlalchemy import update
from sqlalchemy.orm import Session

from actors.myntrix.devices.models import DeviceRecord
from actors.myntrix.agents.models import AgentRecord
from actors.myntrix.visualization import (
    AGENT_RING,
    DEVICE_RING,
    RUNTIME_NODE_ID,
    STATUS_COLORS,
    VISUALIZATION_TOPIC,
    VisualizationFeed,
    layout_position,
    visualization_data,
)
from vareon_runtime.bus import Event, EventBus
from vareon_runtime.store import Store

TIMEOUT = 30


def add_agent(status: str, name: str = "agent") -> tuple[str, Any]:
    agent_id = str(uuid.uuid4())

    def write(session: Session) -> None:
        session.add(
            AgentRecord(
                id=agent_id, name=name, type="process", status=status, health=80 if status == "running" else 0,
                configuration={"command": ["true"]}, desired_state="stopped", restarts=0,
            )
        )

    return agent_id, write


def add_device(status: str, position: dict[str, float] | None = None) -> tuple[str, Any]:
    device_id = str(uuid.uuid4())
    configuration = {"position": position} if position is not None else {}

    def write(session: Session) -> None:
        session.add(
            DeviceRecord(
                id=device_id, name="device", type="printer", connection_string="tcp://127.0.0.1:1",
                status=status, desired_state="connected", configuration=configuration,
                firmware_version="Marlin 2.1.2" if status == "connected" else None,
            )
        )

    return device_id, write


def test_layout_is_a_pure_function_of_the_id() -> None:
    # Pinned: the same id gives the same place in any process and any release (no hash
    # randomisation, no dependence on order); changing the layout moves every user's scene.
    assert layout_position("5f1c1a52-9a55-4b1e-8d58-7c2f3f0f6a10", "agent").model_dump() == {
        "x": 2.205,
        "y": 1.0,
        "z": -6.351,
    }
    ids = [str(uuid.UUID(int=n)) for n in range(200)]
    for kind, (inner, outer) in (("agent", AGENT_RING), ("device", DEVICE_RING)):
        places = [layout_position(node_id, kind) for node_id in ids]  # type: ignore[arg-type]
        assert places == [layout_position(node_id, kind) for node_id in ids]  # type: ignore[arg-type]
        for place in places:
            assert inner - 1e-3 <= math.hypot(place.x, place.z) <= outer + 1e-3
        assert len({(p.x, p.z) for p in places}) == len(ids)


async def test_scene_nodes_colours_positions_and_links(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        running_id, write = add_agent("running", "worker")
        await store.write(write)
        crashed_id, write = add_agent("error")
        await store.write(write)
        placed_id, write = add_device("connected", {"x": 1.5, "y": 2.0, "z": -3.0})
        await store.write(write)
        first = await visualization_data(store)

        # Adding nodes moves nobody.
        for status in ("backoff", "stopped"):
            await store.write(add_agent(status)[1])
        free_id, write = add_device("connecting")
        await store.write(write)
        second = await visualization_data(store)

    nodes = {node.id: node for node in second.nodes}
    assert {node.id: node.position for node in first.nodes} == {
        node_id: nodes[node_id].position for node_id in (RUNTIME_NODE_ID, running_id, crashed_id, placed_id)
    }
    runtime = nodes[RUNTIME_NODE_ID]
    assert (runtime.kind, runtime.position.x, runtime.position.y, runtime.position.z) == ("runtime", 0, 0, 0)

    worker = nodes[running_id]
    assert (worker.kind, worker.name, worker.status, worker.active, worker.animation, worker.health) == (
        "agent", "worker", "running", True, "pulse", 80
    )
    assert worker.color == STATUS_COLORS["running"] == "#22c55e"
    assert worker.position == layout_position(running_id, "agent") and worker.position_source == "layout"

    crashed = nodes[crashed_id]
    assert (crashed.color, crashed.active, crashed.animation) == ("#ef4444", False, "alert")

    placed = nodes[placed_id]
    assert (placed.position.x, placed.position.y, placed.position.z) == (1.5, 2.0, -3.0)
    assert placed.position_source == "configured"
    assert (placed.kind, placed.color, placed.active, placed.firmware_version) == ("device", "#22c55e", True, "Marlin 2.1.2")

    free = nodes[free_id]
    assert free.position == layout_position(free_id, "device") and free.position_source == "layout"
    assert (free.color, free.active, free.animation) == ("#3b82f6", False, "blink")

    statuses = sorted(node.status for node in second.nodes if node.kind == "agent")
    assert statuses == ["backoff", "error", "running", "stopped"]
    links = {(link.source, link.target): link.active for link in second.links}
    assert len(links) == len(second.nodes) - 1
    assert links[(RUNTIME_NODE_ID, running_id)] is True
    assert links[(RUNTIME_NODE_ID, free_id)] is False

    wire = second.model_dump(mode="json", by_alias=True)
    assert set(wire) == {"nodes", "links", "generatedAt"}
    assert wire["generatedAt"].endswith("Z")
    assert {"positionSource", "lastActivity", "firmwareVersion"} <= set(wire["nodes"][1])


async def test_feed_publishes_once_per_burst_of_changes(store: Store) -> None:
    bus = EventBus()
    agent_id, write = add_agent("stopped")
    feed = VisualizationFeed(store, bus, min_interval=0.2)
    with trio.fail_after(TIMEOUT), bus.subscribe(VISUALIZATION_TOPIC) as scene:
        await store.write(write)
        async with trio.open_nursery() as nursery:
            await nursery.start(feed.run)
            # Output and health samples do not change the scene.
            bus.publish(f"agent.{agent_id}.log", {"line": "hello"})
            bus.publish(f"agent.{agent_id}.health", {"health": 50})
            await trio.testing.wait_all_tasks_blocked()
            assert feed.published == 0

            def set_status(status: str) -> Any:
                def write(session: Session) -> None:
                    session.execute(update(AgentRecord).where(AgentRecord.id == agent_id).values(status=status))

                return write

            await store.write(set_status("running"))
            for _ in range(20):  # a burst: one publication
                bus.publish(f"agent.{agent_id}.status", {"id": agent_id, "status": "running"})
            first = await scene.receive()
            await store.write(set_status("error"))
            bus.publish(f"device.{uuid.uuid4()}.status", {"status": "connected"})
            second = await scene.receive()
            assert feed.published == 2
            nursery.cancel_scope.cancel()

    assert isinstance(first, Event) and isinstance(second, Event)
    # At most every min_interval seconds (a lower bound: it cannot come sooner).
    assert (second.time - first.time).total_seconds() >= 0.2 - 0.01
    agent = [node for node in first.data["nodes"] if node["id"] == agent_id]
    assert agent[0]["status"] == "running" and agent[0]["color"] == "#22c55e"
    agent = [node for node in second.data["nodes"] if node["id"] == agent_id]
    assert agent[0]["status"] == "error" and agent[0]["animation"] == "alert"
    assert bus.subscriber_count == 0


def test_feed_refuses_a_bad_interval() -> None:
    with pytest.raises(ValueError, match="min_interval must be a positive number of seconds, not 0"):
        VisualizationFeed(None, EventBus(), min_interval=0)  # type: ignore[arg-type]
