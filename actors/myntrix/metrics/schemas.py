"""Wire shapes of the host's metrics (``GET /api/myntrix/system-metrics``; seed 003's
``mocked`` flag and its reason)."""

from __future__ import annotations

from pydantic import ConfigDict, Field

from actors.kit.wire import CamelModel, Timestamp

__all__ = ["DiskMetrics", "MemoryMetrics", "SystemMetrics", "SystemSample"]


class MemoryMetrics(CamelModel):
    """Physical memory in bytes; ``null`` where no source gave a value."""

    model_config = ConfigDict(frozen=True)

    total: int | None
    available: int | None
    used: int | None
    percent: float | None


class DiskMetrics(CamelModel):
    """The file system of the runtime's data directory, in bytes."""

    model_config = ConfigDict(frozen=True)

    path: str
    total: int | None
    used: int | None
    free: int | None
    percent: float | None


class SystemSample(CamelModel):
    """One reading of the host. ``mocked``: psutil was skipped or failed (``reason`` says why)
    and the values come from other sources; CPU use is then estimated from the load average."""

    model_config = ConfigDict(frozen=True)

    time: Timestamp
    cpu_percent: float | None = Field(description="CPU use of the host, 0-100.")
    cpu_count: int | None
    memory: MemoryMetrics
    disk: DiskMetrics
    load_average: tuple[float, float, float] | None = Field(description="1, 5 and 15 minutes; null where the OS has none.")
    mocked: bool
    reason: str | None


class SystemMetrics(CamelModel):
    """``GET /api/myntrix/system-metrics``: the latest sample, the history (oldest first), and
    whether the latest is mocked and why."""

    current: SystemSample
    history: list[SystemSample]
    mocked: bool
    reason: str | None
