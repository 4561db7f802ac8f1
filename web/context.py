"""How a request reaches the runtime: the :class:`RuntimeContext` kept on the app.

``create_app`` stores the context in ``app.extensions["vareon"]``; every blueprint, error handler
and permission check reads it back with :func:`current_context`, the one way in.
"""

from __future__ import annotations

from quart import Quart, current_app

from vareon_runtime.component import RuntimeContext

__all__ = ["EXTENSION", "current_context", "install_context"]

EXTENSION = "vareon"


def install_context(app: Quart, ctx: RuntimeContext) -> None:
    """Keep ``ctx`` on ``app`` for :func:`current_context`."""
    app.extensions[EXTENSION] = ctx


def current_context() -> RuntimeContext:
    """The runtime context of the app serving the current request or WebSocket.

    Raises:
        RuntimeError: outside an app context, or on an app not built by ``create_app``.
    """
    try:
        ctx: RuntimeContext = current_app.extensions[EXTENSION]
    except KeyError:
        raise RuntimeError(
            "this app has no Vareon runtime context; build it with web.create_app(ctx)"
        ) from None
    return ctx
