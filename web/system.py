"""The runtime itself (seed 002): liveness and a status page of every module.

``/api/system/status`` shows each child of the root supervisor with its state, restarts, last
error and uptime, the live actors by kind, the store's write queue, and the journal's recent
records, so a module that gave up while nobody watched is visible with its reason. It also shows
what depends on the host: the runtime's own process (resident memory, threads, CPU time) and the
metrics module's latest host sample; where ``/proc`` is denied (Termux) or
``VAREON_MOCK_SYSTEM_METRICS`` is set, those come from other sources and the answer says
``"mocked": true`` with the ``reason``, as ``/api/myntrix/system-metrics`` does.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import trio
from pydantic import BaseModel, Field
from quart import Blueprint
from quart_schema import validate_response
from sqlalchemy import select
from sqlalchemy.orm import Session

from actors.myntrix.metrics import HostMetrics, SystemSample

from vareon_runtime.auth import Principal, Role
from vareon_runtime.clock import utcnow
from vareon_runtime.component import RuntimeContext
from vareon_runtime.errors import NotRegisteredError
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

if TYPE_CHECKING:
    from drivers.metrics import ProcessSample

__all__ = ["RECENT_FAILURES", "ProcessStatus", "RuntimeStatus", "blueprint", "human_duration"]

RECENT_FAILURES = 20

blueprint = Blueprint("system", __name__)


class ProcessStatus(BaseModel):
    """The runtime's own process. Bytes of memory; ``null`` where no source gave a value."""

    pid: int
    rss: int | None = Field(description="Resident memory now.")
    peak_rss: int | None = Field(description="The most resident memory since the runtime started.")
    threads: int | None
    cpu_seconds: float = Field(description="User and system CPU time since the runtime started.")
    mocked: bool = Field(description="psutil was skipped or failed; the values come from other sources.")
    reason: str | None


class RuntimeStatus(SystemStatus):
    """The runtime as a whole, and what depends on its host: its own process and the host's
    latest sample (`null` while the metrics module is not running). `mocked` with a `reason`
    when any of those readings was skipped or failed (`VAREON_MOCK_SYSTEM_METRICS`, a denied
    `/proc`)."""

    process: ProcessStatus
    host: SystemSample | None = Field(description="The metrics module's latest sample (`/api/myntrix/system-metrics`).")
    mocked: bool
    reason: str | None


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
@validate_response(RuntimeStatus)
async def status() -> RuntimeStatus:
    """Each module's state and uptime, the runtime version, live actors, recent failures; the
    runtime's process and the host's latest sample, `mocked` with a `reason` where `/proc` is
    denied or `VAREON_MOCK_SYSTEM_METRICS` is set."""
    ctx = current_context()
    failures = await ctx.store.read(_recent_events)
    process = await trio.to_thread.run_sync(_read_process)
    host = _latest_host_sample(ctx)
    reasons = [r for r in (process.reason, host.reason if host is not None else None) if r]
    now = utcnow()
    children = ctx.root.which_children() if ctx.root is not None else []
    return RuntimeStatus(
        name=ctx.config.runtime.name,
        version=ctx.version,
        started_at=ctx.started_at,
        uptime=_uptime(time.monotonic() - ctx.started_monotonic),
        modules=[_module(child, now) for child in children],
        actors=ctx.registry.count_by_kind(),
        store=StoreStatus(queue_depth=ctx.store.queue_depth),
        failures=[JournalEvent.model_validate(row) for row in failures],
        process=ProcessStatus(
            pid=process.pid,
            rss=process.rss,
            peak_rss=process.peak_rss,
            threads=process.threads,
            cpu_seconds=process.cpu_seconds,
            mocked=process.mocked,
            reason=process.reason,
        ),
        host=host,
        mocked=process.mocked or (host is not None and host.mocked),
        reason="; ".join(dict.fromkeys(reasons)) or None,
    )


def _read_process() -> ProcessSample:
    from drivers.metrics import read_process  # psutil: imported when first asked for

    return read_process()


def _latest_host_sample(ctx: RuntimeContext) -> SystemSample | None:
    try:
        metrics = ctx.registry.face(HostMetrics)
    except NotRegisteredError:
        return None
    return metrics.metrics().current


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
