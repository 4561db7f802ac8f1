"""The runtime itself (seed 002): liveness and a status page of every module.

``/api/system/status`` shows each child of the root supervisor with its state, restarts, last
error and uptime, the live actors by kind, the store's write queue, and the journal's recent
records, so a module that gave up while nobody watched is visible with its reason.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Any

from quart import Blueprint
from quart_schema import validate_response
from sqlalchemy import select
from sqlalchemy.orm import Session

from vareon_runtime.auth import Principal, Role
from vareon_runtime.clock import utcnow
from vareon_runtime.component import RuntimeContext
from vareon_runtime.store import EventRecord
from vareon_runtime.supervisor import ChildInfo, ChildStatus

from .direct import direct
from .context import current_context
from .permissions import public, requires
from .schemas import (
    HealthResponse,
    JournalEvent,
    ModuleStatus,
    StoreStatus,
    SystemStatus,
    Uptime,
)

__all__ = ["RECENT_FAILURES", "blueprint", "human_duration"]

RECENT_FAILURES = 20

blueprint = Blueprint("system", __name__)


def _health(ctx: RuntimeContext, principal: Principal | None) -> HealthResponse:
    return HealthResponse(version=ctx.version)


@blueprint.get("/health")
@public
@direct(_health)
@validate_response(HealthResponse)
async def health() -> HealthResponse:
    """Liveness: the process answers. No authentication."""
    return _health(current_context(), None)


@blueprint.get("/api/system/status")
@requires(Role.VIEWER)
@validate_response(SystemStatus)
async def status() -> SystemStatus:
    """Each module's state and uptime, the runtime version, live actors, recent failures."""
    ctx = current_context()
    failures = await ctx.store.read(_recent_events)
    now = utcnow()
    children = ctx.root.which_children() if ctx.root is not None else []
    return SystemStatus(
        name=ctx.config.runtime.name,
        version=ctx.version,
        started_at=ctx.started_at,
        uptime=_uptime(time.monotonic() - ctx.started_monotonic),
        modules=[_module(child, now) for child in children],
        actors=ctx.registry.count_by_kind(),
        store=StoreStatus(queue_depth=ctx.store.queue_depth),
        failures=[JournalEvent.model_validate(row) for row in failures],
    )


def human_duration(seconds: float) -> str:
    """``"2 days, 3:04:05"``: whole seconds the way :class:`datetime.timedelta` prints them."""
    return str(timedelta(seconds=int(max(0.0, seconds))))


def _uptime(seconds: float) -> Uptime:
    seconds = max(0.0, seconds)
    return Uptime(seconds=round(seconds, 3), text=human_duration(seconds))


def _module(child: ChildInfo, now: datetime) -> ModuleStatus:
    running = child.status is ChildStatus.RUNNING and child.started_at is not None
    return ModuleStatus(
        name=child.name,
        kind=child.kind,
        status=child.status.value,
        restarts=child.restarts,
        last_error=child.last_error,
        started_at=child.started_at,
        uptime=_uptime((now - child.started_at).total_seconds()) if running else None,  # type: ignore[operator]
    )


def _recent_events(session: Session) -> list[dict[str, Any]]:
    rows = session.scalars(
        select(EventRecord).order_by(EventRecord.id.desc()).limit(RECENT_FAILURES)
    )
    return [
        {
            "id": row.id,
            "time": row.time,
            "source": row.source,
            "kind": row.kind,
            "message": row.message,
            "details": row.details,
        }
        for row in rows
    ]
