"""``VareonConnection``: Quart-Trio's HTTP connection with two short paths (decision 0018): a
:func:`~web.direct.direct` route answered from memory, and a request whose body is all in served
in the connection's own task."""

from __future__ import annotations

import math

import trio
from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable
from quart import Response
from quart.asgi import ASGIHTTPConnection
from quart.signals import (
    appcontext_popped,
    appcontext_pushed,
    appcontext_tearing_down,
    got_request_exception,
    request_finished,
    request_started,
    request_tearing_down,
)
from quart.utils import encode_headers
from quart.wrappers.response import DataBody

from vareon_runtime.auth import Principal

from .context import EXTENSION as CONTEXT_EXTENSION
from .errors import new_request_id
from .headers import JSON_HEADERS
from .exchange import Exchange
from .permissions import caller_now
from .uploads import UploadConnection

__all__ = ["VareonConnection"]

_HTTP1 = ("1.0", "1.1")
_REQUEST_SIGNALS = (
    request_started,
    request_finished,
    request_tearing_down,
    got_request_exception,
    appcontext_pushed,
    appcontext_popped,
    appcontext_tearing_down,
)

class VareonConnection(UploadConnection):
    """Quart-Trio's HTTP connection, with two short paths.

    A :func:`direct` route is answered from memory when it can be (see there). Then, Quart-Trio
    serves every request with two tasks in a nursery, one feeding the body and
    watching for the client leaving, one running the view, and cancels the pair at the end:
    about a third of the framework's cost of a small request. When the first message already
    holds the whole body (always so for a request without one: Hypercorn sends its empty body
    at once), the request is served in the connection's own task instead. A buffered answer
    leaves as one message; a streamed answer is sent the way Quart-Trio sends it, watched for
    the client leaving (the stream stops then) and bounded by `RESPONSE_TIMEOUT`. What this
    gives up: such a view is not cancelled if the client leaves while it runs; it finishes and
    its answer is dropped (views do not wait unbounded: an ask has a timeout). A body still
    arriving takes Quart-Trio's path, through an :class:`~web.exchange.Exchange` (decision
    0023: the connection is recycled or closed after the answer, an early answer closes it).
    """

    async def __call__(self, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        if await self._answer_directly(send):
            return
        first = await receive()
        if first["type"] == "http.request" and not first.get("more_body", False):
            await self._serve_whole(first.get("body", b""), receive, send)
            return
        # The body is still arriving: Quart-Trio's path, through an Exchange (decision 0023).
        exchange = Exchange(self.scope, receive, send, first)
        await super().__call__(exchange.receive, exchange.send)

    async def _serve_whole(
        self, data: bytes, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if data:
            request = self._create_request_from_scope(send)  # an upload route's limit
            request.body.append(data)
        else:
            # No body, so no body limit to choose: the upload lookup (a URL match) is skipped.
            request = ASGIHTTPConnection._create_request_from_scope(self, send)
        request.body.set_complete()
        response = await self.app.handle_request(request)
        if isinstance(response, Response) and isinstance(response.response, DataBody):
            body = response.response
            try:
                await send(
                    {
                        "type": "http.response.start",
                        "status": response.status_code,
                        "headers": encode_headers(response.headers),
                    }
                )
                await send(
                    {
                        "type": "http.response.body",
                        "body": body.data[body.begin : body.end],
                        "more_body": False,
                    }
                )
            except trio.BusyResourceError:
                pass  # Hypercorn is closing the connection of a client that left (Exchange)
            return
        timeout = self.app.config["RESPONSE_TIMEOUT"]
        if isinstance(response, Response) and response.timeout is not Ellipsis:
            timeout = response.timeout
        # Watching for the client leaving, which must not cancel Hypercorn's end of the response.
        exchange = Exchange(self.scope, receive, send, body_done=True)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._cancel_on_disconnect, nursery.cancel_scope, exchange.receive)
            with trio.move_on_after(math.inf if timeout is None else timeout):
                await self._send_response(exchange.send, response)
            nursery.cancel_scope.cancel()

    async def _answer_directly(self, send: ASGISendCallable) -> bool:
        """Answer a :func:`direct` route from memory; False to leave the request to Quart."""
        app = self.app
        routes = getattr(app, "direct_routes", None)
        scope = self.scope
        if not routes or scope["method"] != "GET" or not app.direct_answers:
            return False
        if any(signal.receivers for signal in _REQUEST_SIGNALS):
            return False  # someone listens to Quart's request signals: let Quart send them
        route = routes.get(scope["path"])
        if route is None or scope["http_version"] not in _HTTP1 or scope.get("root_path"):
            return False
        authorization = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                if authorization is None:  # the first one, as Quart's headers.get() reads it
                    authorization = value.decode("latin1")
            elif name == b"transfer-encoding" or (
                name == b"content-length" and value.strip() != b"0"
            ):
                return False  # a body: the full path reads it, within its limit
        ctx = app.extensions[CONTEXT_EXTENSION]
        caller = caller_now(route.access, authorization, ctx.auth)
        if caller is None:
            return False  # refused, or only the full check can tell: it answers
        try:
            model = route.answer(ctx, caller if isinstance(caller, Principal) else None)
        except Exception:  # noqa: BLE001 - not swallowed: the full path runs the view again
            return False  # and answers 500, logged with its request id
        if type(model) is not route.model:
            return False  # declined (None), or not the declared shape: the view decides
        body = model.__pydantic_serializer__.to_json(model, **app.dump_options)
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                        (b"x-request-id", new_request_id().encode()),
                        *JSON_HEADERS,
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body, "more_body": False})
        except trio.BusyResourceError:
            pass  # Hypercorn is closing the connection of a client that left (Exchange)
        return True

    async def _cancel_on_disconnect(
        self, scope: trio.CancelScope, receive: ASGIReceiveCallable
    ) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        scope.cancel()
