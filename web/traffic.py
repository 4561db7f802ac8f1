"""``Traffic``: the web front's requests and WebSockets counted as they pass, for ``/metrics``.

:class:`TrafficMeter` is ASGI middleware around the app (Quart's ``app.asgi_app``, its
documented place for middleware), so every answer counts: Quart's path, the connection's own
short paths, and the routes answered from memory (:func:`web.direct.direct`), which a request
hook would have switched off. Per request it costs two clock reads, a wrapped ``send`` and one
bucket of a :class:`~vareon_runtime.latency.LatencyHistogram`; nothing of Prometheus is imported
(decision 0028).

Requests are counted by method, route template (``/api/myntrix/agents/<agent_id>``, never the
raw path, so an id does not make a series) and status. Quart's path notes the template of the
rule it matched in the request's ASGI scope; a route answered from memory is its own path (such
routes have no parameters); a request no route matched (a 404, a 405) is ``<unmatched>``. A
request the client left before any answer has status 0.

WebSockets are counted by route template from the accept to the end of the connection: open
clients, connections, who ended them (``server``: the runtime closed it, refused it or stopped;
``client``: the client closed it or its connection dropped), and the events the runtime dropped
for a client that read too slowly, as the endpoints tell the client (a ``dropped`` frame with a
``count``, web/websocket.py and web/telemetry.py).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Awaitable, Callable
from time import perf_counter
from typing import Any

from hypercorn.typing import ASGIReceiveCallable, ASGIReceiveEvent, ASGISendCallable, ASGISendEvent
from quart import Quart
from werkzeug.exceptions import HTTPException

from vareon_runtime.latency import HTTP_BUCKETS, LatencyHistogram

__all__ = ["ROUTE_KEY", "UNMATCHED", "Traffic", "TrafficMeter", "dropped_count", "install_traffic"]

ROUTE_KEY = "vareon.route"
"""The ASGI scope key under which Quart's path notes the template of the rule it matched."""

UNMATCHED = "<unmatched>"
"""The route of a request no rule matched."""

_DROPPED_MARK = '"type":"dropped"'
# Where the mark must start by, in a compact JSON frame: {"id":<int>,"type":"dropped"...} or
# {"type":"dropped",...}.
_DROPPED_WINDOW = 48

ASGIApp = Callable[[dict[str, Any], ASGIReceiveCallable, ASGISendCallable], Awaitable[None]]


class Traffic:
    """What the web front served: HTTP answers and WebSocket connections (see the module)."""

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, int], LatencyHistogram] = {}
        """Seconds from the request's arrival to its answer's last byte handed to the server, by
        ``(method, route, status)``."""
        self.in_flight = 0
        self.websocket_clients: Counter[str] = Counter()
        self.websocket_connections: Counter[str] = Counter()
        self.websocket_closes: Counter[tuple[str, str]] = Counter()
        self.websocket_dropped_events: Counter[str] = Counter()

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one HTTP answer."""
        key = (method, route, status)
        histogram = self.requests.get(key)
        if histogram is None:
            histogram = self.requests[key] = LatencyHistogram(HTTP_BUCKETS)
        histogram.observe(seconds)


def dropped_count(text: str) -> int:
    """Events a WebSocket frame says were dropped: its ``count`` if it is a ``dropped`` frame,
    else 0 (cheap for every other frame: a look at its first characters)."""
    if _DROPPED_MARK not in text[:_DROPPED_WINDOW]:
        return 0
    try:
        frame = json.loads(text)
    except ValueError:
        return 0
    count = frame.get("count") if isinstance(frame, dict) and frame.get("type") == "dropped" else None
    return count if type(count) is int and count > 0 else 0


class TrafficMeter:
    """ASGI middleware counting into ``traffic`` (see the module docstring).

    Args:
        app: the Quart app (its URL map names a WebSocket's route; its direct routes their own).
        asgi: the ASGI callable it wraps (``app.asgi_app``).
        traffic: where to count.
    """

    __slots__ = ("app", "asgi", "traffic")

    def __init__(self, app: Quart, asgi: ASGIApp, traffic: Traffic) -> None:
        self.app = app
        self.asgi = asgi
        self.traffic = traffic

    async def __call__(self, scope: dict[str, Any], receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        kind = scope["type"]
        if kind != "http":
            if kind == "websocket":
                await self._websocket(scope, receive, send)
            else:
                await self.asgi(scope, receive, send)
            return
        # HTTP inline, not in a method of its own: one frame less on every request.
        traffic = self.traffic
        status = 0

        async def counted(message: ASGISendEvent) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        # A duration on the wall, read with the cheapest clock (trio's adds a lookup of the run).
        started = perf_counter()
        traffic.in_flight += 1
        try:
            await self.asgi(scope, receive, counted)
        finally:
            traffic.in_flight -= 1
            route = scope.get(ROUTE_KEY)
            if route is None:
                path = scope["path"]
                direct = getattr(self.app, "direct_routes", None)
                route = path if direct and path in direct else UNMATCHED
            traffic.observe(scope["method"], route, status, perf_counter() - started)

    async def _websocket(self, scope: dict[str, Any], receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        traffic = self.traffic
        route: str | None = None
        ended_by: str | None = None

        async def counted_send(message: ASGISendEvent) -> None:
            nonlocal route, ended_by
            kind = message["type"]
            if kind == "websocket.send":
                text = message.get("text")
                if text is not None and route is not None:
                    dropped = dropped_count(text)
                    if dropped:
                        traffic.websocket_dropped_events[route] += dropped
            elif kind == "websocket.accept":
                route = self._websocket_route(scope)
                traffic.websocket_clients[route] += 1
                traffic.websocket_connections[route] += 1
            elif kind == "websocket.close" and ended_by is None:
                ended_by = "server"
            await send(message)

        async def counted_receive() -> ASGIReceiveEvent:
            nonlocal ended_by
            message = await receive()
            if message["type"] == "websocket.disconnect" and ended_by is None:
                ended_by = "client"
            return message

        try:
            await self.asgi(scope, counted_receive, counted_send)
        finally:
            if route is not None:
                traffic.websocket_clients[route] -= 1
                traffic.websocket_closes[(route, ended_by or "server")] += 1

    def _websocket_route(self, scope: dict[str, Any]) -> str:
        # Once per connection: a WebSocket's rule is matched again here, as the accept carries
        # no trace of it.
        try:
            rule, _ = self.app.url_map.bind("localhost").match(scope["path"], websocket=True, return_rule=True)
        except HTTPException:
            return UNMATCHED
        return str(rule.rule)


def install_traffic(app: Quart, traffic: Traffic) -> None:
    """Count ``app``'s traffic into ``traffic``: the middleware, and Quart's path noting the
    template of the rule each request matched."""
    handle = app.handle_request

    async def handle_request(request: Any) -> Any:
        try:
            return await handle(request)
        finally:
            rule = request.url_rule
            if rule is not None:
                request.scope[ROUTE_KEY] = rule.rule

    app.handle_request = handle_request  # type: ignore[method-assign]
    app.asgi_app = TrafficMeter(app, app.asgi_app, traffic)  # type: ignore[method-assign]
