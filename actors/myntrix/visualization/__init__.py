"""The 3D scene (seed 001): agents and devices as nodes, read from their tables
(:func:`visualization_data`) and published on the bus when they change (:class:`VisualizationFeed`)."""

from actors.myntrix.visualization.component import VISUALIZATION_NAME as VISUALIZATION_NAME
from actors.myntrix.visualization.component import component as component
from actors.myntrix.visualization.feed import VisualizationFeed as VisualizationFeed
from actors.myntrix.visualization.scene import AGENT_RING as AGENT_RING
from actors.myntrix.visualization.scene import DEVICE_RING as DEVICE_RING
from actors.myntrix.visualization.scene import RUNTIME_NODE_ID as RUNTIME_NODE_ID
from actors.myntrix.visualization.scene import STATUS_COLORS as STATUS_COLORS
from actors.myntrix.visualization.scene import VISUALIZATION_TOPIC as VISUALIZATION_TOPIC
from actors.myntrix.visualization.scene import SceneLink as SceneLink
from actors.myntrix.visualization.scene import SceneNode as SceneNode
from actors.myntrix.visualization.scene import Vector3 as Vector3
from actors.myntrix.visualization.scene import VisualizationData as VisualizationData
from actors.myntrix.visualization.scene import layout_position as layout_position
from actors.myntrix.visualization.scene import visualization_data as visualization_data

__all__ = [
    "AGENT_RING",
    "DEVICE_RING",
    "RUNTIME_NODE_ID",
    "STATUS_COLORS",
    "VISUALIZATION_NAME",
    "VISUALIZATION_TOPIC",
    "SceneLink",
    "SceneNode",
    "Vector3",
    "VisualizationData",
    "VisualizationFeed",
    "component",
    "layout_position",
    "visualization_data",
]
