"""``Exchange``: one HTTP request and its answer as the app sees them, guarded against what
Hypercorn 0.18 does inside the app's ``send`` (decision 0023).

Hypercorn ends a request inside the app's last ``send``: it puts ``http.disconnect`` on the
app's queue, then either starts the connection's next cycle and its keep-alive timer, or, when
the body was not all read, closes the socket (``HTTPStream._send_closed`` ->
``H11Protocol._maybe_recycle``). Quart-Trio cancels the request as soon as it reads that
``http.disconnect``, so the rest of Hypercorn's work is cancelled at its next checkpoint: after an
early answer the socket is never closed and the next request on it is never read; after any
other request that took Quart-Trio's path the keep-alive timer is never started again. An
`Exchange` holds that ``http.disconnect`` back from the app until the last ``send`` has
returned.

An early answer (sent before the body has all arrived: 401, 403, 405, 413, 415, 422) also
gets ``Connection: close`` on HTTP/1, the close Hypercorn is about to make: a client then
opens a new connection for its next request instead of writing into this one.

Last, Hypercorn closing a connection whose client left (``TCPServer._close``, its
``send_eof`` taken without the send lock) can make the app's ``send`` raise
``trio.BusyResourceError``; the client is gone, so the answer is dropped, as Hypercorn drops one
to a broken socket, instead of ending in an "Error in ASGI Framework" traceback.
"""

from __future__ import annotations

from typing import cast

import trio
from hypercorn.typing import (
    ASGIReceiveCallable,
    ASGIReceiveEvent,
    ASGISendCallable,
    ASGISendEvent,
    HTTPScope,
)

__all__ = ["Exchange"]

_HTTP1 = ("1.0", "1.1")
_CLOSE = (b"connection", b"close")


class Exchange:
    """The ``receive`` and ``send`` an app is given for one HTTP request.

    Args:
        scope: the request's ASGI scope.
        receive: Hypercorn's ``receive``.
        send: Hypercorn's ``send``.
        first: a message already taken from ``receive``, handed out first.
        body_done: the whole body was already received (no early answer is possible).
    """

    __slots__ = ("_body_done", "_first", "_gone", "_http1", "_last", "_receive", "_send")

    def __init__(
        self,
        scope: HTTPScope,
        receive: ASGIReceiveCallable,
        send: ASGISendCallable,
        first: ASGIReceiveEvent | None = None,
        *,
        body_done: bool = False,
    ) -> None:
        self._receive = receive
        self._send = send
        self._first = first
        self._http1 = scope["http_version"] in _HTTP1
        self._body_done = body_done
        self._last: trio.Event | None = None  # set once the last send has returned
        self._gone = False

    @property
    def body_done(self) -> bool:
        """The app has received the whole body, or the client left."""
        return self._body_done

    async def receive(self) -> ASGIReceiveEvent:
        """The next message for the app; ``http.disconnect`` only once the last send returned."""
        message = self._first
        if message is None:
            message = await self._receive()
        else:
            self._first = None
        if message["type"] == "http.request":
            if not message.get("more_body", False):
                self._body_done = True
        elif message["type"] == "http.disconnect":
            self._body_done = True
            if self._last is not None:
                # Hypercorn put it inside the last send, which has not returned yet: the app
                # would cancel Hypercorn's recycling or closing of the connection.
                await self._last.wait()
        return message

    async def send(self, message: ASGISendEvent) -> None:
        """Send ``message``; dropped once the client is known to be gone."""
        if self._gone:
            return
        try:
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                last = self._last = trio.Event()
                try:
                    await self._send(message)
                finally:
                    last.set()
                return
            if message["type"] == "http.response.start" and not self._body_done and self._http1:
                headers = [*message.get("headers", ()), _CLOSE]
                message = cast(ASGISendEvent, {**message, "headers": headers})
            await self._send(message)
        except trio.BusyResourceError:
            # Hypercorn's reader is closing the socket (send_eof) because the client left.
            self._gone = True
