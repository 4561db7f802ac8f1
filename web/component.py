"""The web front as a runtime component (entry point ``vareon.components: web``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from vareon_runtime.component import Component, RuntimeContext
from vareon_runtime.supervisor import ChildSpec

if TYPE_CHECKING:
    from .server import WebServer

__all__ = ["WEB_ORDER", "component"]

# Highest order: the web front starts after every domain and stops before them.
WEB_ORDER = 1000
WEB_SHUTDOWN = 5.0


def _build(ctx: RuntimeContext) -> ChildSpec | None:
    """The ``web`` child of the root supervisor, or None when ``[server] enabled = false``.

    The child's factory hands out the same :class:`WebServer` on every (re)start, so its app and
    bound address stay reachable through ``spec.factory()``.
    """
    if not ctx.config.server.enabled:
        return None
    from .server import WebServer  # Quart and Hypercorn load only for a runtime that serves

    server = WebServer(ctx)

    def factory() -> WebServer:
        return server

    return ChildSpec("web", factory, shutdown=WEB_SHUTDOWN)


component = Component(name="web", build=_build, order=WEB_ORDER)
"""The ``web`` component."""
