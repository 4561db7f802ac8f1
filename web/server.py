"""``WebServer``: Hypercorn's trio worker serving the app inside the runtime's own nursery.

It follows trio's start convention, so the root supervisor runs it like any other child: it
reports started once the sockets listen (with port 0 the bound port is in :attr:`WebServer.port`),
and when cancelled it stops gracefully: no new connections, requests in flight get Hypercorn's
``graceful_timeout``, then the app's shutdown runs.
"""

from __future__ import annotations

import logging
import os
import resource
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve
from quart_trio import QuartTrio

from vareon_runtime.component import RuntimeContext
from vareon_runtime.config import ServerConfig

from .app import create_app

__all__ = ["WebServer", "hypercorn_config"]

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
        return hypercorn_config(
            self.ctx.config.server,
            access_log=self.access_log,
            graceful_timeout=self.graceful_timeout,
        )

    async def run(self, *, task_status: trio.TaskStatus[WebServer] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen, report started, serve until cancelled, then stop gracefully.

        Raises:
            OSError: the address cannot be bound (in use, or not an address of this machine).
        """
        stop = trio.Event()
        served = trio.Event()
        # Shielded so that cancelling run() becomes Hypercorn's graceful shutdown instead of
        # cutting connections; the deadline set on stop bounds it.
        serving = trio.CancelScope(shield=True)
        async with trio.open_nursery() as nursery:
            self.bound = await nursery.start(self._serve, serving, stop, served)
            log.info("web front listening on %s", ", ".join(self.bound))
            task_status.started(self)
            try:
                await trio.sleep_forever()
            finally:
                stop.set()
                deadline = trio.current_time() + self.graceful_timeout + 1.0
                serving.deadline = deadline
                ports = {port for port in (urlsplit(url).port for url in self.bound) if port}
                self.bound = []
                nursery.start_soon(self._abort_at, deadline, ports, served)

    async def _abort_at(self, deadline: float, ports: set[int], served: trio.Event) -> None:
        """At ``deadline``, cut the connections Hypercorn could not close by itself.

        Hypercorn writes to a socket inside a shielded scope, so a client that stops reading
        pins that write, and the server with it, past any cancellation. Shutting the socket
        down makes the write fail at once; Hypercorn then cleans up as for a dropped client.
        """
        with trio.CancelScope(shield=True):
            with trio.move_on_at(deadline):
                await served.wait()
                return
            cut = _shut_down_connections(ports)
            if cut:
                log.warning(
                    "cut %d connection(s) still open %gs after the stop began "
                    "(a client that stopped reading)", cut, self.graceful_timeout + 1.0,
                )

    async def _serve(
        self,
        scope: trio.CancelScope,
        stop: trio.Event,
        served: trio.Event,
        *,
        task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        try:
            with scope:
                await serve(
                    self.app,  # type: ignore[arg-type]
                    self.hypercorn_config(),
                    shutdown_trigger=stop.wait,
                    task_status=task_status,
                )
        finally:
            served.set()


def hypercorn_config(
    server: ServerConfig, *, access_log: bool = False, graceful_timeout: float = 3.0
) -> HypercornConfig:
    """Hypercorn's settings for ``server``: the runtime's, and the HTTP benchmark floor's.

    Args:
        server: the ``[server]`` section (host and port to bind).
        access_log: log one line per request.
        graceful_timeout: seconds requests in flight get to finish on stop.
    """
    host = server.host
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # an IPv6 address, as Hypercorn's bind syntax wants it
    config = HypercornConfig()
    config.bind = [f"{host}:{server.port}"]
    config.accesslog = logging.getLogger("vareon.web.access") if access_log else None
    config.errorlog = logging.getLogger("vareon.web.server")
    config.graceful_timeout = graceful_timeout
    config.include_server_header = False  # no product and version for scanners
    return config


def _shut_down_connections(ports: set[int]) -> int:
    """Shut down every accepted TCP connection of this process on ``ports``; return how many.

    Works on the process's own descriptors (``/proc/self/fd``, else every number below the
    descriptor limit): a duplicate of each socket is shut down, which ends the connection for
    the original too. Listening sockets and this process's own outgoing connections (their local
    port is not ours) are left alone.
    """
    try:
        fds: Iterable[int] = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        fds = range(3, min(resource.getrlimit(resource.RLIMIT_NOFILE)[0], 65536))
    cut = 0
    for fd in fds:
        try:
            dup = os.dup(fd)
        except OSError:
            continue
        try:
            sock = socket.socket(fileno=dup)
        except OSError:
            os.close(dup)
            continue
        with sock:
            try:
                if sock.type != socket.SOCK_STREAM:
                    continue
                local = sock.getsockname()
                sock.getpeername()  # a listener has no peer: OSError, skipped
            except OSError:
                continue
            if isinstance(local, tuple) and local[1] in ports:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                    cut += 1
                except OSError:
                    pass
    return cut
