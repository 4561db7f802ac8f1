"""``vareon watch``: print a running runtime's live events, one JSON object a line.

A small WebSocket client (``wsproto``, which the server already needs, over a trio stream: no
package beyond the runtime's own) speaking the two protocols of docs/websocket.md:

- topics (``vareon watch 'agent.*'``): ``/api/websocket``, the ``auth`` handshake, one
  ``subscribe`` per pattern; each ``event`` is printed as ``{"topic", "data", "time", "seq"}``;
- a device's telemetry (``vareon watch --device <id>``): ``/ws/myntrix/telemetry/<id>``; each
  event of a ``telemetry`` frame is printed, and each ``status`` frame.

Events a slow reader lost (``dropped``) are counted on stderr. The watch ends after ``count``
events, when the server closes the socket (the reason on stderr), or with Ctrl-C.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TextIO
from urllib.parse import quote, urlsplit

import trio
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)

from .errors import VareonError

__all__ = ["WatchClosed", "watch_device", "watch_topics", "websocket_url"]

CONNECT_TIMEOUT = 10.0
"""Seconds to connect, authenticate and subscribe before giving up."""


class WatchClosed(VareonError):
    """The server closed the socket (or refused it); the message says why."""


def websocket_url(base: str, path: str) -> str:
    """``base`` (``http://host:port``, ``https://...``, ``ws://...``) with ``path``, as ws or wss."""
    parts = urlsplit(base)
    scheme = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}.get(parts.scheme)
    if scheme is None or not parts.hostname:
        raise VareonError(f"--url must be like http://127.0.0.1:8000, not {base!r}")
    return f"{scheme}://{parts.netloc}{parts.path.rstrip('/')}{path}"


class _Socket:
    """One client WebSocket over a trio stream: text frames in and out, pings answered."""

    def __init__(self, stream: trio.abc.Stream, connection: WSConnection) -> None:
        self._stream = stream
        self._ws = connection
        self._pending: list[str] = []
        self._partial = ""
        self._backlog: list[Any] = []
        self._closed: WatchClosed | None = None

    @classmethod
    async def open(cls, url: str) -> _Socket:
        parts = urlsplit(url)
        secure = parts.scheme == "wss"
        host = parts.hostname or "127.0.0.1"
        port = parts.port or (443 if secure else 80)
        try:
            stream: trio.abc.Stream
            if secure:
                stream = await trio.open_ssl_over_tcp_stream(host, port, ssl_context=ssl.create_default_context())
            else:
                stream = await trio.open_tcp_stream(host, port)
        except OSError as exc:
            raise VareonError(f"cannot reach {host}:{port} ({exc}); is the runtime running there?") from None
        socket = cls(stream, WSConnection(ConnectionType.CLIENT))
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        await socket._write(Request(host=parts.netloc, target=target))
        await socket._handshake(url)
        return socket

    async def _write(self, event: Any) -> None:
        await self._stream.send_all(self._ws.send(event))

    async def _handshake(self, url: str) -> None:
        body = b""
        while True:
            events = await self._events()
            for index, event in enumerate(events):
                if isinstance(event, AcceptConnection):
                    self._backlog = events[index + 1 :]  # the first frames may come with the 101
                    return
                if isinstance(event, RejectConnection):
                    if not event.has_body:
                        raise WatchClosed(f"{url} refused the WebSocket with HTTP {event.status_code}")
                elif isinstance(event, RejectData):
                    body += event.data
                    if event.body_finished:
                        raise WatchClosed(f"{url} refused the WebSocket: {body.decode(errors='replace')[:500]}")

    async def _events(self) -> list[Any]:
        if self._closed is not None:
            raise self._closed
        if self._backlog:
            events, self._backlog = self._backlog, []
            return events
        data = await self._stream.receive_some(65536)
        self._ws.receive_data(data or None)  # b"" would mean "more to come"; None is the end
        if not data:
            raise WatchClosed("the runtime closed the connection")
        return list(self._ws.events())

    async def send(self, frame: dict[str, Any]) -> None:
        await self._write(TextMessage(data=json.dumps(frame)))

    async def receive(self) -> dict[str, Any]:
        """The next JSON frame; raises :class:`WatchClosed` when the server closes."""
        while not self._pending:
            if self._closed is not None:
                raise self._closed
            for event in await self._events():
                if isinstance(event, TextMessage):
                    self._partial += event.data
                    if event.message_finished:
                        self._pending.append(self._partial)
                        self._partial = ""
                elif isinstance(event, Ping):
                    await self._write(event.response())
                elif isinstance(event, CloseConnection):
                    if self._ws.state is ConnectionState.REMOTE_CLOSING:
                        await self._write(event.response())
                    why = f": {event.reason}" if event.reason else ""
                    # Raised once the frames before it are read (an auth_invalid says more).
                    self._closed = WatchClosed(f"the runtime closed the WebSocket (code {event.code}{why})")
                elif isinstance(event, BytesMessage):  # pragma: no cover - the runtime sends text only
                    continue
        frame = json.loads(self._pending.pop(0))
        if not isinstance(frame, dict):  # pragma: no cover - the runtime sends objects only
            raise VareonError(f"unexpected frame from the runtime: {frame!r}")
        return frame

    async def aclose(self) -> None:
        """Say goodbye (a close frame, if the socket is still open) and close the stream."""
        with trio.CancelScope(shield=True), trio.move_on_after(1):
            if self._ws.state is ConnectionState.OPEN:
                try:
                    await self._write(CloseConnection(code=1000))
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass  # closing anyway: the server went first
        await trio.aclose_forcefully(self._stream)


async def _authenticate(socket: _Socket, token: str) -> None:
    frame = await socket.receive()
    if frame.get("type") != "auth_required":
        raise VareonError(f"the runtime did not ask for authentication first: {frame!r}")
    await socket.send({"type": "auth", "access_token": token})
    frame = await socket.receive()
    if frame.get("type") == "auth_invalid":
        raise VareonError(f"the token was refused: {frame.get('message')}; get one with `vareon token USER`")
    if frame.get("type") != "auth_ok":
        raise VareonError(f"unexpected answer to auth: {frame!r}")


@dataclass
class _Printer:
    out: TextIO
    err: TextIO
    count: int | None
    printed: int = 0

    @property
    def done(self) -> bool:
        return self.count is not None and self.printed >= self.count

    def event(self, value: Any) -> None:
        print(json.dumps(value, ensure_ascii=False), file=self.out, flush=True)
        self.printed += 1

    def dropped(self, count: Any) -> None:
        print(f"vareon: {count} events dropped (this client read too slowly)", file=self.err, flush=True)


async def _run(
    url: str,
    token: str,
    printer: _Printer,
    start: Callable[[_Socket], Awaitable[None]],
    each: Callable[[dict[str, Any]], None],
) -> int:
    with trio.fail_after(CONNECT_TIMEOUT):
        socket = await _Socket.open(url)
    try:
        with trio.fail_after(CONNECT_TIMEOUT):
            await _authenticate(socket, token)
            await start(socket)
        while not printer.done:
            each(await socket.receive())
    finally:
        await socket.aclose()
    return 0


async def watch_topics(
    base: str, token: str, topics: Sequence[str], *, count: int | None, out: TextIO, err: TextIO
) -> int:
    """Print the events of ``topics`` (patterns: ``agent.*``, ``job.<id>``, ``*``) from ``base``.

    Returns:
        0 once ``count`` events are printed (never, when ``count`` is None).

    Raises:
        VareonError: the runtime cannot be reached, refuses the token or a topic.
        WatchClosed: the runtime closed the socket (its reason in the message).
    """
    printer = _Printer(out, err, count)
    ids = {index + 1: topic for index, topic in enumerate(topics)}

    async def subscribe(socket: _Socket) -> None:
        for msg_id, topic in ids.items():
            await socket.send({"id": msg_id, "type": "subscribe", "topic": topic})
        waiting = set(ids)
        while waiting:
            frame = await socket.receive()
            if frame.get("type") == "result" and frame.get("id") in waiting:
                if not frame.get("success"):
                    error = frame.get("error") or {}
                    raise VareonError(f"cannot subscribe to {ids[frame['id']]!r}: {error.get('message')}")
                waiting.discard(frame["id"])
            else:
                each(frame)  # an event of a subscription already confirmed

    def each(frame: dict[str, Any]) -> None:
        if frame.get("type") == "event":
            printer.event(frame.get("event"))
        elif frame.get("type") == "dropped":
            printer.dropped(frame.get("count"))

    return await _run(websocket_url(base, "/api/websocket"), token, printer, subscribe, each)


async def watch_device(base: str, token: str, device_id: str, *, count: int | None, out: TextIO, err: TextIO) -> int:
    """Print a device's telemetry events and status changes (``/ws/myntrix/telemetry/<id>``).

    Returns and raises as :func:`watch_topics`; an unknown device is a :class:`VareonError`.
    """
    printer = _Printer(out, err, count)

    async def ready(socket: _Socket) -> None:
        frame = await socket.receive()
        if frame.get("type") == "error":
            raise VareonError(f"the telemetry stream refused: {(frame.get('error') or {}).get('message')}")
        if frame.get("type") != "ready":
            raise VareonError(f"unexpected first frame of the telemetry stream: {frame!r}")

    def each(frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind == "telemetry":
            for event in frame.get("events") or []:
                if not printer.done:
                    printer.event(event)
        elif kind == "status":
            printer.event({"status": frame.get("status")})
        elif kind == "dropped":
            printer.dropped(frame.get("count"))

    path = f"/ws/myntrix/telemetry/{quote(device_id, safe='')}"
    return await _run(websocket_url(base, path), token, printer, ready, each)
