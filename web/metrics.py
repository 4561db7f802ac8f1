"""The host's metrics over HTTP (seed 003): `GET /api/myntrix/system-metrics` answers the latest
sample and the history; on a host where psutil is refused it answers mocked values with the
reason, never a 500."""

from __future__ import annotations

from quart import Blueprint
from quart_schema import validate_response

from actors.myntrix.metrics import HostMetrics, SystemMetrics
from vareon_runtime.auth import Role

from .kit import face
from .permissions import requires

__all__ = ["blueprint"]

blueprint = Blueprint("metrics", __name__)


@blueprint.get("/api/myntrix/system-metrics")
@requires(Role.VIEWER)
@validate_response(SystemMetrics)
async def system_metrics() -> SystemMetrics:
    """The host's CPU, memory, disk of the data directory and load: the latest sample and the
    history, oldest first. `mocked` with a `reason` when psutil was skipped or failed."""
    return face(HostMetrics).metrics()
