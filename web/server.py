"""``WebServer``: Hypercorn's trio worker serving the app inside the runtime's own nursery.

It follows trio's start convention, so the root supervisor runs it like any other child: it
reports started once the sockets listen (with port 0 the bound port is in :attr:`WebServer.port`),
and when cancelled it stops gracefully: no new connections, requests in flight get Hypercorn's
``graceful_timeout``, then the app's shutdown runs.
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve
from quart_trio import QuartTrio

from vareon_runtime.component import RuntimeContext

from .app import create_app

__all__ = ["WebServer"]

log = logging.getLogger("vareon.web")


class WebServer:
    """Serves :func:`~web.app.create_app` of ``ctx`` on ``[server] host:port``.

    Args:
        ctx: the runtime context (its config gives host, port and the body limit).
        access_log: log one line per request (off by default: it costs throughput).
        graceful_timeout: seconds requests in flight get to finish on stop.

    Attributes:
        app: the Quart-Trio app served.
        bound: the addresses listened on while running, e.g. ``["http://127.0.0.1:8000"]``.
    """

    def __init__(
        self, ctx: RuntimeContext, *, access_log: bool = False, graceful_timeout: float = 3.0
    ) -> None:
        self.ctx = ctx
        self.app: QuartTrio = create_app(ctx)
        self.access_log = access_log
        self.graceful_timeout = graceful_timeout
        self.bound: list[str] = []

    @property
    def port(self) -> int | None:
        """The TCP port actually bound (the first address's), or None when not running."""
        if not self.bound:
            return None
        return urlsplit(self.bound[0]).port

    def hypercorn_config(self) -> HypercornConfig:
        """Hypercorn's settings for ``[server]``."""
        server = self.ctx.config.server
        host = server.host
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"  # an IPv6 address, as Hypercorn's bind syntax wants it
        config = HypercornConfig()
        config.bind = [f"{host}:{server.port}"]
        config.accesslog = logging.getLogger("vareon.web.access") if self.access_log else None
        config.errorlog = logging.getLogger("vareon.web.server")
        config.graceful_timeout = self.graceful_timeout
        config.include_server_header = False  # no product and version for scanners
        return config

    async def run(self, *, task_status: trio.TaskStatus[WebServer] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen, report started, serve until cancelled, then stop gracefully.

        Raises:
            OSError: the address cannot be bound (in use, or not an address of this machine).
        """
        stop = trio.Event()
        # Shielded so that cancelling run() becomes Hypercorn's graceful shutdown instead of
        # cutting connections; the deadline set on stop bounds it.
        serving = trio.CancelScope(shield=True)
        async with trio.open_nursery() as nursery:
            self.bound = await nursery.start(self._serve, serving, stop)
            log.info("web front listening on %s", ", ".join(self.bound))
            task_status.started(self)
            try:
                await trio.sleep_forever()
            finally:
                stop.set()
                serving.deadline = trio.current_time() + self.graceful_timeout + 1.0
                self.bound = []

    async def _serve(
        self,
        scope: trio.CancelScope,
        stop: trio.Event,
        *,
        task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        with scope:
            await serve(
                self.app,  # type: ignore[arg-type]
                self.hypercorn_config(),
                shutdown_trigger=stop.wait,
                task_status=task_status,
            )
