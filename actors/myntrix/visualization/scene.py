"""The 3D scene's data (seed 001, "3D Visualization"): agents and devices as nodes around the
runtime, with stable positions, status colours, activity and links.

:func:`visualization_data` reads the ``agents`` and ``devices`` tables once (one store read) and
builds the payload that ``GET /api/myntrix/visualization-data`` answers.
:class:`~actors.myntrix.visualization.feed.VisualizationFeed`
publishes the same payload (its wire form, camelCase) on the bus topic :data:`VISUALIZATION_TOPIC`
when an agent or a device changes, at most every ``min_interval`` seconds, so a dashboard
subscribed through ``/api/websocket`` follows without polling.

Positions (x, z the ground plane, y up, as three.js has it):

- the runtime itself is the node ``runtime`` at the origin;
- a device whose configuration has a ``position`` stands there (``positionSource: "configured"``);
- every other node gets a place computed from its id alone (``"layout"``): a hash of the id picks
  an angle and a radius inside its kind's ring (agents :data:`AGENT_RING`, devices
  :data:`DEVICE_RING`). The same id lands on the same spot after a restart, and adding or removing
  other nodes never moves it; two nodes can land close together (set a device's position then).

Colours, by status (:data:`STATUS_COLORS`)::

    running, connected       #22c55e  green     active
    starting, connecting     #3b82f6  blue      blinking
    stopping                 #f59e0b  amber     blinking
    backoff                  #f97316  orange    blinking (restarting after a crash)
    error                    #ef4444  red       alert
    stopped, disconnected    #6b7280  grey      idle
    the runtime              #8b5cf6  violet

``animation`` names the same thing for the scene: ``pulse`` (active), ``blink`` (in transition),
``alert`` (error), ``none`` (idle).

Links: every agent and device is linked to the runtime node (``kind: "hub"``; ``active`` when the
node is). The runtime records no relation between an agent and a device, so no such link is made.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any, Literal

from pydantic import Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from actors.kit.wire import CamelModel, Timestamp
from vareon_runtime.clock import utcnow
from vareon_runtime.store import Store

from ..agents.models import AgentRecord
from ..devices.models import DeviceRecord

__all__ = [
    "AGENT_RING",
    "DEVICE_RING",
    "RUNTIME_NODE_ID",
    "STATUS_COLORS",
    "VISUALIZATION_TOPIC",
    "SceneLink",
    "SceneNode",
    "Vector3",
    "VisualizationData",
    "layout_position",
    "visualization_data",
]

VISUALIZATION_TOPIC = "visualization"
"""The bus topic the fresh payload is published on."""

RUNTIME_NODE_ID = "runtime"
"""The id of the node that stands for the runtime itself."""

AGENT_RING = (6.0, 10.0)
"""Radii (scene units) between which agents are laid out."""

DEVICE_RING = (12.0, 16.0)
"""Radii between which devices are laid out (outside the agents)."""

_HEIGHT = {"agent": 1.0, "device": 0.0}

STATUS_COLORS: dict[str, str] = {
    "running": "#22c55e",
    "connected": "#22c55e",
    "starting": "#3b82f6",
    "connecting": "#3b82f6",
    "stopping": "#f59e0b",
    "backoff": "#f97316",
    "error": "#ef4444",
    "stopped": "#6b7280",
    "disconnected": "#6b7280",
}
"""Colour of a node by its status; a status not listed is drawn grey."""

_RUNTIME_COLOR = "#8b5cf6"
_UNKNOWN_COLOR = "#6b7280"
_ACTIVE = frozenset({"running", "connected"})
_TRANSITIONS = frozenset({"starting", "connecting", "stopping", "backoff"})

NodeKind = Literal["runtime", "agent", "device"]
Animation = Literal["pulse", "blink", "alert", "none"]


class Vector3(CamelModel):
    """A point of the scene: x and z on the ground, y up."""

    x: float
    y: float
    z: float


class SceneNode(CamelModel):
    """One thing in the scene: the runtime, an agent or a device."""

    id: str
    kind: NodeKind
    name: str
    type: str = Field(description="The agent's or device's type (process, printer, ...); 'runtime' for the hub.")
    status: str = Field(description="The agent's or device's status, as its own API reports it.")
    color: str = Field(description="#rrggbb from the status (see the palette in the docs).")
    active: bool = Field(description="Running (an agent) or connected (a device).")
    animation: Animation
    health: int | None = Field(None, description="An agent's health, 0-100; null for devices.")
    position: Vector3
    position_source: Literal["configured", "layout"]
    last_activity: Timestamp | None = Field(
        None, description="An agent's last start, a device's last received data."
    )
    firmware_version: str | None = None


class SceneLink(CamelModel):
    """An edge of the scene, from ``source`` to ``target`` node ids."""

    source: str
    target: str
    kind: Literal["hub"] = "hub"
    active: bool


class VisualizationData(CamelModel):
    """``GET /api/myntrix/visualization-data`` and the ``visualization`` bus event."""

    nodes: list[SceneNode]
    links: list[SceneLink]
    generated_at: Timestamp


def layout_position(node_id: str, kind: Literal["agent", "device"]) -> Vector3:
    """The place of a node with no configured position: from its id alone, inside its kind's ring.

    Stable across restarts and independent of every other node.
    """
    digest = hashlib.blake2b(node_id.encode("utf-8", "surrogatepass"), digest_size=16).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    v = int.from_bytes(digest[8:], "big") / 2**64
    inner, outer = AGENT_RING if kind == "agent" else DEVICE_RING
    # sqrt spreads nodes evenly over the ring's area rather than crowding its inner edge.
    radius = math.sqrt(inner**2 + (outer**2 - inner**2) * v)
    angle = 2 * math.pi * u
    return Vector3(x=round(radius * math.cos(angle), 3), y=_HEIGHT[kind], z=round(radius * math.sin(angle), 3))


def _look(status: str) -> tuple[str, bool, Animation]:
    color = STATUS_COLORS.get(status, _UNKNOWN_COLOR)
    if status in _ACTIVE:
        return color, True, "pulse"
    if status in _TRANSITIONS:
        return color, False, "blink"
    if status == "error":
        return color, False, "alert"
    return color, False, "none"


def _configured_position(configuration: Any) -> Vector3 | None:
    """A device configuration's ``position`` (its wire form), or None when it has none."""
    if not isinstance(configuration, dict):
        return None
    position = configuration.get("position")
    if not isinstance(position, dict):
        return None
    try:
        return Vector3(x=float(position.get("x", 0.0)), y=float(position.get("y", 0.0)), z=float(position.get("z", 0.0)))
    except (TypeError, ValueError):  # a row written by hand; the layout still places it
        return None


def _scene(session: Session) -> VisualizationData:
    """Build the payload from the tables (in the store's reader thread)."""
    nodes: list[SceneNode] = [
        SceneNode(
            id=RUNTIME_NODE_ID,
            kind="runtime",
            name="Vareon Runtime",
            type="runtime",
            status="running",
            color=_RUNTIME_COLOR,
            active=True,
            animation="pulse",
            position=Vector3(x=0.0, y=0.0, z=0.0),
            position_source="layout",
        )
    ]
    links: list[SceneLink] = []
    agents = session.execute(
        select(
            AgentRecord.id, AgentRecord.name, AgentRecord.type, AgentRecord.status,
            AgentRecord.health, AgentRecord.last_run,
        ).order_by(AgentRecord.created_at, AgentRecord.id)
    ).all()
    for agent_id, name, kind, status, health, last_run in agents:
        color, active, animation = _look(status)
        nodes.append(
            SceneNode(
                id=agent_id, kind="agent", name=name, type=kind, status=status, color=color,
                active=active, animation=animation, health=health,
                position=layout_position(agent_id, "agent"), position_source="layout",
                last_activity=last_run,
            )
        )
        links.append(SceneLink(source=RUNTIME_NODE_ID, target=agent_id, active=active))
    devices = session.execute(
        select(
            DeviceRecord.id, DeviceRecord.name, DeviceRecord.type, DeviceRecord.status,
            DeviceRecord.configuration, DeviceRecord.last_seen, DeviceRecord.firmware_version,
        ).order_by(DeviceRecord.created_at, DeviceRecord.id)
    ).all()
    for device_id, name, kind, status, configuration, last_seen, firmware in devices:
        color, active, animation = _look(status)
        configured = _configured_position(configuration)
        nodes.append(
            SceneNode(
                id=device_id, kind="device", name=name, type=kind, status=status, color=color,
                active=active, animation=animation,
                position=configured or layout_position(device_id, "device"),
                position_source="configured" if configured is not None else "layout",
                last_activity=last_seen, firmware_version=firmware,
            )
        )
        links.append(SceneLink(source=RUNTIME_NODE_ID, target=device_id, active=active))
    return VisualizationData(nodes=nodes, links=links, generated_at=utcnow())


async def visualization_data(store: Store) -> VisualizationData:
    """The scene as the tables hold it now (one store read).

    Raises:
        StoreError: the database could not be read.
    """
    return await store.read(_scene)
