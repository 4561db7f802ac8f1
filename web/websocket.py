"""The multiplexed WebSocket endpoint ``/api/websocket``, modelled on Home Assistant's.

Every frame is one JSON object in a text frame.

Handshake (:func:`authenticate_websocket`; the dedicated streams use the same one)::

    server  {"type": "auth_required", "version": "<runtime version>"}
    client  {"type": "auth", "access_token": "<access token>"}
    server  {"type": "auth_ok", "version": "<runtime version>"}
         or {"type": "auth_invalid", "message": "<why>"}, then close with code 4001

Browsers cannot set headers on a WebSocket: with ``?token=<access token>`` in the URL the server
authenticates right after ``auth_required`` and answers ``auth_ok`` (or ``auth_invalid``) without
waiting for an ``auth`` message. Anything but an ``auth`` message first, or nothing within
:data:`AUTH_TIMEOUT` seconds, is ``auth_invalid`` and close.

The sign-in must hold while the socket is open (:func:`closed_when_signed_out`): when its account
is removed or disabled, or signed out (a new password, a lower role), the server sends
``{"type": "auth_invalid", "message": "<why>; sign in again"}`` and closes with code 4001 at
once, in the same step that makes the account's next request refused.

Commands, after ``auth_ok``, carry an integer ``id`` greater than every id sent before on this
connection (so the first can be 1); an id is used up once accepted, even when its command then
fails. Everything the server says about a command echoes its id::

    {"id": 1, "type": "ping"}
        -> {"id": 1, "type": "pong"}
    {"id": 2, "type": "subscribe", "topic": "a.*"}
        -> {"id": 2, "type": "result", "success": true, "result": null}
    {"id": 3, "type": "unsubscribe", "subscription": 2}
        -> {"id": 3, "type": "result", "success": true, "result": null}

A failed command::

    {"id": 4, "type": "result", "success": false, "error": {"code": "<code>", "message": "<why>"}}

    invalid_format   not JSON (binary, not UTF-8 JSON, NaN, a lone surrogate, nested too
                     deeply), not an object, no integer id (then "id" is null), a field
                     missing, extra or of the wrong type, or a topic that is not `a.b`, `a.*`
                     or `*` (letters, digits, `_`, `-` between the dots; at most 256 characters)
    id_reuse         the id is not greater than the last accepted one
    unknown_command  a "type" other than ping, subscribe, unsubscribe
    not_found        unsubscribe from an id that is not an open subscription
    forbidden        the user's role may not read that topic (no role is refused today)
    too_many_subscriptions
                     the connection already holds MAX_SUBSCRIPTIONS subscriptions

A bad frame gets its error result and the connection stays open. Both the ``auth`` message and
commands are read by one loader (:func:`_load_frame`, the HTTP bodies' strict JSON parser), so
no frame can crash the handler.

Events of a subscription echo the subscribe command's id; ``data`` is made JSON-safe (pydantic
models, dataclasses, datetimes, enums, UUIDs, sets; bytes as URL-safe base64; NaN and infinities
as null; anything else as its ``str``)::

    {"id": 2, "type": "event",
     "event": {"topic": "a.b", "data": {...}, "time": "2025-01-01T00:00:00.000000Z", "seq": 17}}

Data that cannot be encoded at all (a lone surrogate, a frozenset as a key) is a publisher's bug:
it is logged, and the event still goes out with ``"data": null`` and an ``"error"`` saying why.

A client that reads too slowly loses the oldest events of a subscription, never the newest, and
is told how many before the events that were kept::

    {"id": 2, "type": "dropped", "count": 40}

Each subscription is a bounded bus subscription (:data:`SUBSCRIPTION_QUEUE_SIZE` events); a task
per subscription moves its events into one small outbound queue per connection, which one sender
task writes to the socket. A socket that does not drain stalls only its own connection's tasks:
the bus keeps publishing without waiting and drops from that connection's queues alone. Closing
the socket closes every subscription it held.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import pydantic_core
import trio
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    ValidationError,
)
from quart import Blueprint, websocket

from vareon_runtime.auth import Principal, shown
from vareon_runtime.bus import Event, Overflow, Subscription
from vareon_runtime.clock import isoformat
from vareon_runtime.component import RuntimeContext
from vareon_runtime.errors import AuthenticationError

from .context import current_context
from .permissions import websocket_auth
from .validation import parse_json

__all__ = [
    "AUTH_TIMEOUT",
    "CLIENT_MESSAGES",
    "CLOSE_AUTH_FAILED",
    "MAX_SUBSCRIPTIONS",
    "OUTBOUND_QUEUE_SIZE",
    "SERVER_MESSAGES",
    "SUBSCRIPTION_QUEUE_SIZE",
    "AuthInvalid",
    "AuthMessage",
    "AuthOk",
    "AuthRequired",
    "CommandError",
    "DroppedMessage",
    "EventBody",
    "EventMessage",
    "PingCommand",
    "PongMessage",
    "ResultErrorMessage",
    "ResultMessage",
    "SubscribeCommand",
    "UnsubscribeCommand",
    "authenticate_websocket",
    "blueprint",
    "closed_when_signed_out",
    "may_subscribe",
]

AUTH_TIMEOUT = 10.0
"""Seconds a client has to send its ``auth`` message after ``auth_required``."""

CLOSE_AUTH_FAILED = 4001
"""Close code after ``auth_invalid`` (the private range's mirror of HTTP 401)."""

SUBSCRIPTION_QUEUE_SIZE = 256
"""Events one subscription holds for a client that reads slowly before the oldest are dropped."""

OUTBOUND_QUEUE_SIZE = 16
"""Encoded frames waiting for the socket, shared by all of a connection's subscriptions."""

MAX_SUBSCRIPTIONS = 256
"""Open subscriptions one connection may hold."""

log = logging.getLogger("vareon.web")

_SEND_AUTH = 'send {"type": "auth", "access_token": "<access token>"} first'
# bool before int: bool is an int in Python, not in JSON
_JSON_TYPES: tuple[tuple[type, str], ...] = (
    (dict, "object"),
    (list, "array"),
    (str, "string"),
    (bool, "boolean"),
    (int, "number"),
    (float, "number"),
    (type(None), "null"),
)

blueprint = Blueprint("websocket", __name__)


def may_subscribe(principal: Principal, pattern: str) -> bool:
    """Return whether ``principal`` may read the events of ``pattern``.

    Every role reads everything today (a viewer reads all topics). This is the one place to narrow
    that when a topic carries something only some roles may see.
    """
    return True


# --- wire shapes -------------------------------------------------------------------------------


class _Command(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: StrictInt
    type: str


class PingCommand(_Command):
    type: Literal["ping"]


TOPIC_PATTERN = re.compile(r"\*|[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*(\.\*)?")
"""A topic (``agent.<id>.status``), a prefix (``agent.*``) or everything (``*``)."""
TOPIC_MAX = 256


def _topic(value: str) -> str:
    if len(value) > TOPIC_MAX or not TOPIC_PATTERN.fullmatch(value):
        shown = value if len(value) <= 64 else f"{value[:64]}..."
        raise ValueError(
            f"topic pattern {shown!r} is invalid: use an exact topic ('agent.<id>.status'), 'prefix.*'"
            f" or '*'; letters, digits, '_' and '-' between the dots, at most {TOPIC_MAX} characters"
        )
    return value


class SubscribeCommand(_Command):
    type: Literal["subscribe"]
    topic: Annotated[StrictStr, AfterValidator(_topic)]


class UnsubscribeCommand(_Command):
    type: Literal["unsubscribe"]
    subscription: StrictInt


_COMMANDS: dict[str, type[_Command]] = {
    "ping": PingCommand,
    "subscribe": SubscribeCommand,
    "unsubscribe": UnsubscribeCommand,
}


# The frames of the handshake and what the server sends: the models the AsyncAPI document
# (/asyncapi.json, web/asyncapi.py) is made of. The handlers write these shapes as dicts (the
# event path stays a single to_json); tests/web/test_asyncapi.py checks every frame they send
# against the model of its type.


class _Frame(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AuthMessage(_Frame):
    """The client's first message, unless the URL carries ``?token=<access token>``."""

    type: Literal["auth"]
    access_token: str = Field(description="An access token from `POST /api/token` (or `vareon token USER`).")


class AuthRequired(_Frame):
    """The server's first frame on every WebSocket of the runtime."""

    type: Literal["auth_required"]
    version: str = Field(description="The runtime's version.")


class AuthOk(_Frame):
    """The token is accepted: commands (or the stream) follow."""

    type: Literal["auth_ok"]
    version: str


class AuthInvalid(_Frame):
    """The token is refused (or the sign-in ended while open); the socket closes with 4001."""

    type: Literal["auth_invalid"]
    message: str = Field(description="Why, and what to do.")


class PongMessage(_Frame):
    """The answer to ``ping``."""

    id: int
    type: Literal["pong"]


class ResultMessage(_Frame):
    """A command succeeded: ``subscribe`` (events of its id follow) or ``unsubscribe``."""

    id: int
    type: Literal["result"]
    success: Literal[True]
    result: None


class CommandError(_Frame):
    code: Literal[
        "invalid_format", "id_reuse", "unknown_command", "not_found", "forbidden", "too_many_subscriptions"
    ]
    message: str


class ResultErrorMessage(_Frame):
    """A command failed; the connection stays open. ``id`` is null when the frame had none."""

    id: int | None
    type: Literal["result"]
    success: Literal[False]
    error: CommandError


class EventBody(_Frame):
    topic: str = Field(description="The topic it was published on (docs/websocket.md lists them).", examples=["agent.<id>.status"])
    data: Any = Field(description="What the publisher sent, made JSON-safe; null with `error` when it could not be.")
    time: str = Field(description="When it was published (ISO 8601, UTC).", json_schema_extra={"format": "date-time"})
    seq: int = Field(description="The bus's sequence number: increasing, gaps where events went to no one.")
    error: str | None = Field(None, description="Only when `data` could not be encoded as JSON.")


class EventMessage(_Frame):
    """An event of a subscription; ``id`` is the subscribe command's."""

    id: int
    type: Literal["event"]
    event: EventBody


class DroppedMessage(_Frame):
    """The client read too slowly: ``count`` oldest events of the subscription were lost, before
    the events that follow."""

    id: int
    type: Literal["dropped"]
    count: int


CLIENT_MESSAGES: tuple[type[BaseModel], ...] = (AuthMessage, PingCommand, SubscribeCommand, UnsubscribeCommand)
"""What a client sends on ``/api/websocket``."""

SERVER_MESSAGES: tuple[type[BaseModel], ...] = (
    AuthRequired,
    AuthOk,
    AuthInvalid,
    PongMessage,
    ResultMessage,
    ResultErrorMessage,
    EventMessage,
    DroppedMessage,
)
"""What the server sends on ``/api/websocket``."""


class _CommandError(Exception):
    """A command failed; becomes an error result with ``code`` and ``message``."""

    def __init__(self, code: str, message: str, *, msg_id: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.msg_id = msg_id


def _encode(frame: dict[str, Any]) -> str:
    """Serialise ``frame`` to JSON text, making whatever an event carries JSON-safe."""
    return pydantic_core.to_json(
        frame, serialize_unknown=True, inf_nan_mode="null", bytes_mode="base64"
    ).decode()


def _json_type(value: Any) -> str:
    for kind, name in _JSON_TYPES:
        if isinstance(value, kind):
            return name
    return type(value).__name__


class _BadFrame(Exception):
    """A frame that is not one JSON value in a text frame; the message says which."""


def _load_frame(frame: str | bytes) -> Any:
    """The JSON value of one frame (the shared loader of the handshake and the commands).

    Raises:
        _BadFrame: a binary frame, or text that is not strict JSON (:func:`parse_json`),
            including one nested too deeply.
    """
    if not isinstance(frame, str):
        raise _BadFrame("a binary frame, not JSON text")
    try:
        return parse_json(frame)
    except (ValueError, RecursionError) as exc:
        raise _BadFrame(f"not JSON ({exc})") from None


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors(include_url=False):
        where = ".".join(str(part) for part in item["loc"])
        parts.append(f"{where}: {item['msg']}" if where else item["msg"])
    return "; ".join(parts)


def _encode_event(msg_id: int, event: Event) -> str:
    body: dict[str, Any] = {
        "topic": event.topic,
        "data": event.data,
        "time": isoformat(event.time),
        "seq": event.seq,
    }
    try:
        return _encode({"id": msg_id, "type": "event", "event": body})
    except ValueError as exc:  # PydanticSerializationError: a lone surrogate, a frozenset key...
        # The publisher's bug: logged, and the client still learns the event happened.
        log.error("event %d on %r cannot be sent as JSON: %s", event.seq, event.topic, exc)
        body["data"] = None
        body["error"] = f"the event's data cannot be encoded as JSON: {exc}"
        return _encode({"id": msg_id, "type": "event", "event": body})


# --- handshake ---------------------------------------------------------------------------------


async def authenticate_websocket(
    ctx: RuntimeContext, first_message_timeout: float | None = None
) -> Principal:
    """Run the auth handshake on the current WebSocket and return who connected.

    Sends ``auth_required``, takes the access token from the ``token`` query parameter or else
    from the first message (``{"type": "auth", "access_token": "..."}``), and answers ``auth_ok``.

    Args:
        ctx: the runtime (its ``auth`` service checks the token; its ``version`` is announced).
        first_message_timeout: seconds to wait for the ``auth`` message; :data:`AUTH_TIMEOUT`
            when ``None``.

    Raises:
        AuthenticationError: the token is missing, invalid or late, or the first message is not
            an ``auth`` message. The client has been sent ``auth_invalid`` and the socket is
            closed with :data:`CLOSE_AUTH_FAILED`: the handler should just return.
    """
    timeout = AUTH_TIMEOUT if first_message_timeout is None else first_message_timeout
    await websocket.send(_encode({"type": "auth_required", "version": ctx.version}))
    try:
        token = websocket.args.get("token")
        if token is None:
            token = await _receive_auth_token(timeout)
        principal: Principal = await ctx.auth.authenticate(token)
    except AuthenticationError as exc:
        await websocket.send(_encode({"type": "auth_invalid", "message": exc.message}))
        await websocket.close(CLOSE_AUTH_FAILED, "authentication failed")
        raise
    await websocket.send(_encode({"type": "auth_ok", "version": ctx.version}))
    return principal


@asynccontextmanager
async def closed_when_signed_out(ctx: RuntimeContext, principal: Principal) -> AsyncIterator[None]:
    """Serve the socket inside the block while the caller's sign-in holds.

    When the account is removed, disabled or signed out (``Auth.watch``), the block is
    cancelled, the client is sent ``auth_invalid`` with the reason, and the socket is closed
    with :data:`CLOSE_AUTH_FAILED`.
    """
    with trio.CancelScope() as scope, ctx.auth.watch(principal, scope.cancel) as watch:
        yield
    if watch.reason is not None:
        log.info("closed a WebSocket of user %r: %s", principal.username, watch.reason)
        await websocket.send(
            _encode({"type": "auth_invalid", "message": f"{watch.reason}; sign in again"})
        )
        await websocket.close(CLOSE_AUTH_FAILED, watch.reason)


async def _receive_auth_token(timeout: float) -> str:
    with trio.move_on_after(timeout):
        return _token_of(await websocket.receive())
    raise AuthenticationError(f"no auth message within {timeout:g} s; {_SEND_AUTH}")


def _token_of(frame: str | bytes) -> str:
    # The messages describe the frame rather than quote it: a client may send its bare token.
    try:
        message = _load_frame(frame)
    except _BadFrame as exc:
        raise AuthenticationError(f"the first message is {exc}; {_SEND_AUTH}") from None
    if not isinstance(message, dict):
        raise AuthenticationError(
            f"the first message is a JSON {_json_type(message)}, not an object; {_SEND_AUTH}"
        )
    kind = message.get("type")
    if kind != "auth":
        raise AuthenticationError(
            f"the first message must be of type 'auth', not {shown(kind)}; {_SEND_AUTH}"
        )
    token = message.get("access_token")
    if not isinstance(token, str) or not token:
        got = "it is missing" if token is None else f"not a {_json_type(token)}"
        raise AuthenticationError(
            f"the auth message needs access_token as a non-empty string, {got}; {_SEND_AUTH}"
        )
    return token


# --- the connection ----------------------------------------------------------------------------


@dataclass
class _Stream:
    """One subscription of a connection: the bus queue and the task that drains it."""

    subscription: Subscription
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)

    def close(self) -> None:
        self.scope.cancel()
        self.subscription.close()


class _Connection:
    """The command loop of one authenticated socket."""

    def __init__(
        self,
        ctx: RuntimeContext,
        principal: Principal,
        nursery: trio.Nursery,
        outbound: trio.MemorySendChannel[str],
    ) -> None:
        self.ctx = ctx
        self.principal = principal
        self.nursery = nursery
        self.outbound = outbound
        self.last_id = 0
        self.streams: dict[int, _Stream] = {}

    async def serve(self) -> None:
        """Answer frames until the socket closes (Quart then cancels this task)."""
        while True:
            frame = await websocket.receive()
            await self.handle(frame)

    async def handle(self, frame: str | bytes) -> None:
        """Answer one frame: run its command, or send the error result that says what was wrong."""
        try:
            command = self._parse(frame)
        except _CommandError as exc:
            await self._fail(exc.msg_id, exc)
            return
        try:
            await self._dispatch(command)
        except _CommandError as exc:
            await self._fail(command.id, exc)

    async def _fail(self, msg_id: int | None, error: _CommandError) -> None:
        await self.send(
            {
                "id": msg_id,
                "type": "result",
                "success": False,
                "error": {"code": error.code, "message": error.message},
            }
        )

    def _parse(self, frame: str | bytes) -> _Command:
        """Check the frame's shape and id (used up from then on) and return the command."""
        try:
            message = _load_frame(frame)
        except _BadFrame as exc:
            quoted = f": {shown(frame)}" if isinstance(frame, str) else ""
            raise _CommandError("invalid_format", f"the frame is {exc}{quoted}") from None
        if not isinstance(message, dict):
            raise _CommandError(
                "invalid_format", f"a command is a JSON object, not a {_json_type(message)}"
            )
        msg_id = message.get("id")
        # bool is an int in Python, not in JSON
        if not isinstance(msg_id, int) or isinstance(msg_id, bool):
            raise _CommandError(
                "invalid_format", f"a command needs an integer 'id', not {shown(msg_id)}"
            )
        if msg_id <= self.last_id:
            raise _CommandError(
                "id_reuse",
                f"id {msg_id} is not greater than the last id {self.last_id}; ids must increase",
                msg_id=msg_id,
            )
        self.last_id = msg_id
        kind = message.get("type")
        model = _COMMANDS.get(kind) if isinstance(kind, str) else None
        if model is None:
            raise _CommandError(
                "unknown_command",
                f"unknown command type {shown(kind)}; expected one of {', '.join(_COMMANDS)}",
                msg_id=msg_id,
            )
        try:
            return model.model_validate(message)
        except ValidationError as exc:
            raise _CommandError("invalid_format", _describe(exc), msg_id=msg_id) from None

    async def _dispatch(self, command: _Command) -> None:
        if isinstance(command, PingCommand):
            await self.send({"id": command.id, "type": "pong"})
        elif isinstance(command, SubscribeCommand):
            await self._subscribe(command)
        elif isinstance(command, UnsubscribeCommand):
            await self._unsubscribe(command)
        else:  # pragma: no cover - _COMMANDS and this switch are edited together
            raise AssertionError(f"no handler for {command!r}")

    async def _subscribe(self, command: SubscribeCommand) -> None:
        if not may_subscribe(self.principal, command.topic):
            raise _CommandError("forbidden", f"your role may not read {command.topic!r}")
        if len(self.streams) >= MAX_SUBSCRIPTIONS:
            raise _CommandError(
                "too_many_subscriptions",
                f"this connection holds {len(self.streams)} subscriptions, the most allowed; "
                "unsubscribe from one first",
            )
        try:
            subscription = self.ctx.bus.subscribe(command.topic, queue_size=SUBSCRIPTION_QUEUE_SIZE)
        except ValueError as exc:
            raise _CommandError("invalid_format", str(exc)) from None
        stream = _Stream(subscription)
        self.streams[command.id] = stream
        # The result is queued before the pump starts, so it precedes every event of this id.
        await self.send({"id": command.id, "type": "result", "success": True, "result": None})
        self.nursery.start_soon(self._pump, command.id, stream)

    async def _unsubscribe(self, command: UnsubscribeCommand) -> None:
        stream = self.streams.pop(command.subscription, None)
        if stream is None:
            raise _CommandError(
                "not_found",
                f"no open subscription has id {command.subscription}; "
                "use the id of the subscribe command",
            )
        # Cancelling takes effect at once, so no event of this id follows the result.
        stream.close()
        await self.send({"id": command.id, "type": "result", "success": True, "result": None})

    async def _pump(self, msg_id: int, stream: _Stream) -> None:
        with stream.scope:
            while True:
                # receive() rather than `async for`: a cancelled async generator is left unfinalised
                try:
                    item = await stream.subscription.receive()
                except trio.ClosedResourceError:
                    return
                if isinstance(item, Overflow):
                    text = _encode({"id": msg_id, "type": "dropped", "count": item.dropped})
                else:
                    text = _encode_event(msg_id, item)
                await self.outbound.send(text)

    async def send(self, frame: dict[str, Any]) -> None:
        await self.outbound.send(_encode(frame))

    def close(self) -> None:
        """Close every subscription this connection holds."""
        for stream in self.streams.values():
            stream.close()
        self.streams.clear()


async def _write_frames(outbound: trio.MemoryReceiveChannel[str]) -> None:
    async for text in outbound:
        await websocket.send(text)


@blueprint.websocket("/api/websocket")
@websocket_auth
async def api_websocket() -> None:
    """The multiplexed endpoint: handshake, then commands until the socket closes."""
    ctx = current_context()
    try:
        principal = await authenticate_websocket(ctx)
    except AuthenticationError:
        return
    outbound, outbound_queue = trio.open_memory_channel[str](OUTBOUND_QUEUE_SIZE)
    async with closed_when_signed_out(ctx, principal), trio.open_nursery() as nursery:
        connection = _Connection(ctx, principal, nursery, outbound)
        try:
            nursery.start_soon(_write_frames, outbound_queue)
            await connection.serve()
        finally:
            connection.close()
            nursery.cancel_scope.cancel()
