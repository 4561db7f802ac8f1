"""Host metrics as a runtime component (entry point ``vareon.components: metrics``): the
``metrics`` module samples the host and provides :class:`~actors.myntrix.metrics.HostMetrics`."""

from __future__ import annotations

from actors.kit.module import ServiceModule
from vareon_runtime.component import Component, RuntimeContext
from vareon_runtime.registry import Registry
from vareon_runtime.supervisor import ChildSpec

from ..config import SECTION, MyntrixConfig
from .sampler import HostMetrics

__all__ = ["METRICS_NAME", "component", "metrics_module"]

METRICS_NAME = "metrics"


def metrics_module(metrics: HostMetrics, registry: Registry) -> ServiceModule:
    """The module that samples the host once, offers ``metrics``, then samples at its interval."""
    return ServiceModule(registry, metrics, prepare=metrics.sample, work=metrics.run)


def _build(ctx: RuntimeContext) -> ChildSpec:
    configured = ctx.config.section(MyntrixConfig)
    metrics = HostMetrics(
        ctx.config.data_dir_path, interval=configured.metrics_interval, history=configured.metrics_history
    )
    return ChildSpec(METRICS_NAME, lambda: metrics_module(metrics, ctx.registry))


component = Component(name=METRICS_NAME, build=_build, order=9, config=SECTION)
"""The ``metrics`` component."""
