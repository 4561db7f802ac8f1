"""The scene feed as a runtime component (entry point ``vareon.components: visualization``): the
``visualization`` child of the root supervisor is the
:class:`~actors.myntrix.visualization.feed.VisualizationFeed`, after the agents and devices it
shows (order 12)."""

from __future__ import annotations

from vareon_runtime.component import Component, RuntimeContext
from vareon_runtime.supervisor import ChildSpec

from .feed import VisualizationFeed

__all__ = ["VISUALIZATION_NAME", "component"]

VISUALIZATION_NAME = "visualization"


def _build(ctx: RuntimeContext) -> ChildSpec:
    return ChildSpec(VISUALIZATION_NAME, lambda: VisualizationFeed(ctx.store, ctx.bus))


component = Component(name=VISUALIZATION_NAME, build=_build, order=12)
"""The ``visualization`` component."""
