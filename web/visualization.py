"""The 3D scene's data over HTTP: ``GET /api/myntrix/visualization-data`` (seed 001).

Agents and devices as nodes around the runtime, with stable positions, status colours, activity
and links (see :mod:`actors.myntrix.visualization` for the layout and the palette). The same
payload is published on the bus topic ``visualization`` whenever an agent or a device changes,
so a dashboard can subscribe to it on ``/api/websocket`` instead of polling this route.
"""

from __future__ import annotations

from quart import Blueprint
from quart_schema import validate_response

from actors.myntrix.visualization import VisualizationData, visualization_data
from vareon_runtime.auth import Role

from .context import current_context
from .permissions import requires

__all__ = ["blueprint"]

blueprint = Blueprint("visualization", __name__)


@blueprint.get("/api/myntrix/visualization-data")
@requires(Role.VIEWER)
@validate_response(VisualizationData)
async def get_visualization_data() -> VisualizationData:
    """Agents and devices for the 3D scene: nodes (position, colour, activity) and links."""
    return await visualization_data(current_context().store)
