"""The telemetry stream of one device: ``WS /ws/myntrix/telemetry/{deviceId}`` (seeds 001, 003).

Every frame is one JSON object in a text frame. The handshake is the runtime's
(:func:`web.websocket.authenticate_websocket`): the token in the ``token`` query parameter, or in
a first ``{"type": "auth", "access_token": ...}`` message; a bad one gets ``auth_invalid`` and
close code 4001. Then::

    server  {"type": "ready", "deviceId": "<id>"}                 subscribed: events follow
    server  {"type": "telemetry", "deviceId": "<id>", "events": [<event>, ...]}
    server  {"type": "status", "deviceId": "<id>", "status": {"id", "status", "lastSeen", ...}}
    server  {"type": "dropped", "deviceId": "<id>", "count": 40}   events lost, before the next ones
    client  {"type": "ping"}   ->   server {"type": "pong"}

An ``<event>`` is what the device's stream published (:mod:`actors.myntrix.devices.telemetry`),
``time`` in ISO 8601 UTC: ``{"deviceId", "time", "samples": [{"metric", "value"}], "lines": [...]}``
for lines read from the device, ``{"deviceId", "time", "sent": "M105"}`` for a command written to
it. ``status`` frames carry the device's ``device.<id>.status`` events (connected, disconnected...).

An unknown device gets ``{"type": "error", "error": {"code": "not_found", "message", "details"}}``
and close code :data:`CLOSE_NOT_FOUND`; a database that cannot answer, or a devices module that
is not running, ``unavailable`` and :data:`CLOSE_TRY_AGAIN`; a role that may not read the device (none today, see
:func:`web.websocket.may_subscribe`), ``forbidden`` and :data:`CLOSE_FORBIDDEN`. A frame from the client other than a ping gets an ``error`` frame
(``invalid_format``) and the stream goes on.

Batching and slow clients: the stream is a bounded bus subscription (:data:`QUEUE_SIZE` events).
Whatever is queued when the socket can take the next frame goes out as one ``telemetry`` frame
(at most :data:`MAX_EVENTS_PER_FRAME` events), so a slow client gets fewer, larger frames rather
than falling behind; one that still cannot keep up loses the oldest events, never the newest, and
a ``dropped`` frame says how many. Publishers never wait for a client. Closing the socket closes
the subscriptions.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import pydantic_core
import trio
from pydantic import BaseModel, ConfigDict, Field
from quart import Blueprint, websocket

from actors.myntrix.devices import Devices, DeviceStatus, status_topic, telemetry_topic
from vareon_runtime.auth import shown
from vareon_runtime.bus import Event, Overflow, Subscription
from vareon_runtime.errors import (
    AuthenticationError,
    NotFoundError,
    PermissionDeniedError,
    ServiceError,
    StoreError,
    UnavailableError,
)

from .context import current_context
from .kit import face
from .permissions import websocket_auth
from .validation import parse_json
from .websocket import (
    AuthInvalid,
    AuthMessage,
    AuthOk,
    AuthRequired,
    authenticate_websocket,
    closed_when_signed_out,
    may_subscribe,
)

__all__ = [
    "CLIENT_MESSAGES",
    "CLOSE_FORBIDDEN",
    "CLOSE_NOT_FOUND",
    "CLOSE_TRY_AGAIN",
    "MAX_EVENTS_PER_FRAME",
    "QUEUE_SIZE",
    "SERVER_MESSAGES",
    "DeviceStatusEvent",
    "ErrorMessage",
    "LinesEvent",
    "ReadyMessage",
    "Sample",
    "SentEvent",
    "StatusMessage",
    "StreamDropped",
    "StreamError",
    "StreamPing",
    "StreamPong",
    "TelemetryMessage",
    "blueprint",
]

log = logging.getLogger("vareon.web")

CLOSE_NOT_FOUND = 4004
"""Close code for an unknown device (the private range's mirror of HTTP 404, as 4001 is of 401)."""

CLOSE_FORBIDDEN = 4003
"""Close code when the user's role may not read the device's telemetry (mirror of HTTP 403)."""

CLOSE_TRY_AGAIN = 1013
"""Close code when the database cannot tell whether the device exists (RFC 6455 "try again later")."""

QUEUE_SIZE = 256
"""Events the stream holds for a slow client before the oldest are dropped."""

MAX_EVENTS_PER_FRAME = 256
"""Events put together into one ``telemetry`` frame, at most."""

_OUTBOUND_FRAMES = 4
_ID_MAX = 36  # the devices.id column

blueprint = Blueprint("telemetry", __name__)


# The stream's frames, for the AsyncAPI document (/asyncapi.json, web/asyncapi.py); the handlers
# write these shapes as dicts, and tests/web/test_asyncapi.py checks what they send against them.


class _Frame(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class StreamPing(_Frame):
    """The only command the stream reads; anything else gets an ``error`` frame."""

    type: Literal["ping"]


class ReadyMessage(_Frame):
    """Subscribed: telemetry and status frames follow."""

    type: Literal["ready"]
    device_id: str = Field(alias="deviceId")


class Sample(_Frame):
    metric: str = Field(description="The metric's name, from the device's telemetry settings.", examples=["hotend"])
    value: float


class LinesEvent(_Frame):
    """Lines read from the device, with the samples parsed from them."""

    device_id: str = Field(alias="deviceId")
    time: str = Field(description="When they were read (ISO 8601, UTC).", json_schema_extra={"format": "date-time"})
    samples: list[Sample]
    lines: list[str]


class SentEvent(_Frame):
    """A command written to the device."""

    device_id: str = Field(alias="deviceId")
    time: str = Field(json_schema_extra={"format": "date-time"})
    sent: str


class TelemetryMessage(_Frame):
    """What the device said and was sent since the last frame, oldest first."""

    type: Literal["telemetry"]
    device_id: str = Field(alias="deviceId")
    events: list[LinesEvent | SentEvent] = Field(max_length=MAX_EVENTS_PER_FRAME)


class DeviceStatusEvent(_Frame):
    """A device's status change, as published on ``device.<id>.status``."""

    id: str
    status: DeviceStatus
    last_seen: str | None = Field(alias="lastSeen", json_schema_extra={"format": "date-time"})
    last_error: str | None = Field(alias="lastError")
    firmware_version: str | None = Field(alias="firmwareVersion")


class StatusMessage(_Frame):
    type: Literal["status"]
    device_id: str = Field(alias="deviceId")
    status: DeviceStatusEvent


class StreamDropped(_Frame):
    """The client read too slowly: ``count`` oldest events were lost, before what follows."""

    type: Literal["dropped"]
    device_id: str = Field(alias="deviceId")
    count: int


class StreamPong(_Frame):
    type: Literal["pong"]


class StreamError(_Frame):
    code: str = Field(examples=["not_found", "unavailable", "forbidden", "invalid_format"])
    message: str
    details: Any = None


class ErrorMessage(_Frame):
    """A refusal (``not_found``, ``unavailable``, ``forbidden``: the socket then closes with
    4004, 1013 or 4003) or a bad client frame (``invalid_format``: the stream goes on)."""

    type: Literal["error"]
    error: StreamError


CLIENT_MESSAGES: tuple[type[BaseModel], ...] = (AuthMessage, StreamPing)
"""What a client sends on the telemetry stream (``auth`` unless the URL carries ``?token=``)."""

SERVER_MESSAGES: tuple[type[BaseModel], ...] = (
    AuthRequired,
    AuthOk,
    AuthInvalid,
    ReadyMessage,
    TelemetryMessage,
    StatusMessage,
    StreamDropped,
    StreamPong,
    ErrorMessage,
)
"""What the server sends on the telemetry stream."""


def _encode(frame: dict[str, Any]) -> str:
    return pydantic_core.to_json(
        frame, serialize_unknown=True, inf_nan_mode="null", bytes_mode="base64"
    ).decode()


def _not_found(device_id: str) -> NotFoundError:
    return NotFoundError(
        f"no device has the id {shown(device_id)}; list them with GET /api/myntrix/devices",
        details={"deviceId": device_id[:_ID_MAX]},
    )


async def _refuse(error: ServiceError, close_code: int) -> None:
    frame = {"type": "error", "error": {"code": error.code, "message": error.message, "details": error.details}}
    await websocket.send(_encode(frame))
    await websocket.close(close_code, error.code)


async def _pump_telemetry(
    device_id: str, subscription: Subscription, outbound: trio.MemorySendChannel[str]
) -> None:
    """Move the device's telemetry events to the socket, everything queued in one frame."""
    while True:
        first = await subscription.receive()
        items: list[Event | Overflow] = [first]
        while len(items) < MAX_EVENTS_PER_FRAME:
            try:
                items.append(subscription.receive_nowait())
            except trio.WouldBlock:
                break
        events: list[Any] = []
        for item in items:
            if type(item) is Overflow:
                # Lost before what follows: send what came before, then the count.
                if events:
                    await outbound.send(_encode({"type": "telemetry", "deviceId": device_id, "events": events}))
                    events = []
                await outbound.send(_encode({"type": "dropped", "deviceId": device_id, "count": item.dropped}))
            else:
                assert isinstance(item, Event)
                events.append(item.data)
        if events:
            await outbound.send(_encode({"type": "telemetry", "deviceId": device_id, "events": events}))


async def _pump_status(
    device_id: str, subscription: Subscription, outbound: trio.MemorySendChannel[str]
) -> None:
    while True:
        item = await subscription.receive()
        if type(item) is Overflow:  # pragma: no cover - status changes are rare and the queue holds 64
            await outbound.send(_encode({"type": "dropped", "deviceId": device_id, "count": item.dropped}))
        else:
            assert isinstance(item, Event)
            await outbound.send(_encode({"type": "status", "deviceId": device_id, "status": item.data}))


async def _answer(outbound: trio.MemorySendChannel[str]) -> None:
    """Read the client's frames: answer pings, say what is wrong with anything else."""
    while True:
        frame = await websocket.receive()
        message: Any = None
        if isinstance(frame, str):
            try:
                message = parse_json(frame)
            except (ValueError, RecursionError):
                message = None
        if isinstance(message, dict) and message.get("type") == "ping":
            await outbound.send(_encode({"type": "pong"}))
            continue
        await outbound.send(
            _encode(
                {
                    "type": "error",
                    "error": {
                        "code": "invalid_format",
                        "message": 'this stream only reads {"type": "ping"}; telemetry flows without asking',
                        "details": None,
                    },
                }
            )
        )


async def _write(outbound: trio.MemoryReceiveChannel[str]) -> None:
    async for text in outbound:
        await websocket.send(text)


@blueprint.websocket("/ws/myntrix/telemetry/<device_id>")
@websocket_auth
async def telemetry_stream(device_id: str) -> None:
    """Live telemetry, log lines, sent commands and status changes of one device."""
    ctx = current_context()
    try:
        principal = await authenticate_websocket(ctx)
    except AuthenticationError:
        return
    topic = telemetry_topic(device_id)
    if not may_subscribe(principal, topic):  # pragma: no cover - every role reads telemetry today
        await _refuse(PermissionDeniedError(f"your role may not read {topic!r}"), CLOSE_FORBIDDEN)
        return
    if len(device_id) > _ID_MAX or "*" in device_id:  # no such id is ever made (UUIDs), nor a valid topic
        await _refuse(_not_found(device_id), CLOSE_NOT_FOUND)
        return
    # Subscribed before the device is looked up, so nothing published meanwhile is missed.
    with ctx.bus.subscribe(topic, queue_size=QUEUE_SIZE) as telemetry, ctx.bus.subscribe(
        status_topic(device_id), queue_size=64
    ) as status:
        try:
            await face(Devices).get(device_id)
        except NotFoundError:
            await _refuse(_not_found(device_id), CLOSE_NOT_FOUND)
            return
        except UnavailableError as exc:
            await _refuse(exc, CLOSE_TRY_AGAIN)
            return
        except StoreError as exc:
            log.warning("telemetry stream of %s: cannot read the devices table: %s", device_id, exc)
            await _refuse(UnavailableError("the database cannot answer now; reconnect later"), CLOSE_TRY_AGAIN)
            return
        await websocket.send(_encode({"type": "ready", "deviceId": device_id}))
        outbound, outbound_queue = trio.open_memory_channel[str](_OUTBOUND_FRAMES)
        # Quart cancels this task when the client goes; the subscriptions close on the way out.
        # A sign-in that ends (demoted, disabled, new password) closes the stream at once.
        async with closed_when_signed_out(ctx, principal), trio.open_nursery() as nursery:
            nursery.start_soon(_write, outbound_queue)
            nursery.start_soon(_pump_telemetry, device_id, telemetry, outbound)
            nursery.start_soon(_pump_status, device_id, status, outbound)
            await _answer(outbound)
