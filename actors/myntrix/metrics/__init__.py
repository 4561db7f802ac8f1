"""The host's metrics: CPU, memory, disk of the data directory and load, current and history."""

from actors.myntrix.metrics.component import METRICS_NAME as METRICS_NAME
from actors.myntrix.metrics.component import component as component
from actors.myntrix.metrics.component import metrics_module as metrics_module
from actors.myntrix.metrics.sampler import HostMetrics as HostMetrics
from actors.myntrix.metrics.schemas import DiskMetrics as DiskMetrics
from actors.myntrix.metrics.schemas import MemoryMetrics as MemoryMetrics
from actors.myntrix.metrics.schemas import SystemMetrics as SystemMetrics
from actors.myntrix.metrics.schemas import SystemSample as SystemSample

__all__ = [
    "METRICS_NAME",
    "DiskMetrics",
    "HostMetrics",
    "MemoryMetrics",
    "SystemMetrics",
    "SystemSample",
    "component",
    "metrics_module",
]
