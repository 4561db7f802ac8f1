"""``WS /ws/myntrix/telemetry/{deviceId}`` through a live Hypercorn with a real WebSocket client."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit

import pytest
import trio
from sqlalchemy.orm import Session
from trio_websocket import ConnectionClosed, WebSocketConnection, wrap_client_stream
from web_support import DEVICES, Account, Front

import web.telemetry as telemetry_module
from actors.myntrix.devices.configuration import TelemetrySettings
from actors.myntrix.devices.models import DeviceRecord
from actors.myntrix.devices.telemetry import DeviceStream
from vareon_runtime.auth import Role
from vareon_runtime.component import Component
from web.telemetry import CLOSE_NOT_FOUND
from web.websocket import CLOSE_AUTH_FAILED

TIMEOUT = 10
AT = datetime(2025, 3, 1, 12, 0, 0, tzinfo=timezone.utc)


@pytest.fixture
def front_components() -> tuple[Component, ...]:
    """The devices module answers whether a device exists."""
    return DEVICES


async def add_device(front: Front, **configuration: Any) -> str:
    device_id = str(uuid.uuid4())

    def write(session: Session) -> None:
        session.add(
            DeviceRecord(
                id=device_id,
                name="printer",
                type="printer",
                connection_string="tcp://127.0.0.1:1",
                status="connected",
                desired_state="connected",
                configuration=configuration,
            )
        )

    await front.ctx.store.write(write)
    return device_id


@asynccontextmanager
async def connect(front: Front, path: str) -> AsyncIterator[WebSocketConnection]:
    """A trio-websocket client; the TCP stream is closed at the end (trio-websocket leaves it open
    when the server closes first)."""
    parts = urlsplit(front.base_url)
    assert parts.hostname is not None and parts.port is not None
    with trio.fail_after(TIMEOUT):
        stream = await trio.open_tcp_stream(parts.hostname, parts.port)
    async with stream, trio.open_nursery() as nursery:
        ws = await wrap_client_stream(nursery, stream, parts.hostname, path)
        try:
            yield ws
        finally:
            with trio.fail_after(TIMEOUT):
                await ws.aclose()
            await stream.aclose()


async def receive(ws: WebSocketConnection) -> dict[str, Any]:
    with trio.fail_after(TIMEOUT):
        message = json.loads(await ws.get_message())
    assert isinstance(message, dict)
    return message


async def closed_code(ws: WebSocketConnection) -> int:
    with trio.fail_after(TIMEOUT), pytest.raises(ConnectionClosed) as info:
        while True:
            await ws.get_message()
    return info.value.reason.code


@asynccontextmanager
async def stream_of(front: Front, device_id: str, token: str) -> AsyncIterator[WebSocketConnection]:
    """A stream past ``ready``, authenticated with the token in the query."""
    async with connect(front, f"/ws/myntrix/telemetry/{device_id}?token={token}") as ws:
        assert (await receive(ws))["type"] == "auth_required"
        assert (await receive(ws))["type"] == "auth_ok"
        assert await receive(ws) == {"type": "ready", "deviceId": device_id}
        yield ws


async def test_telemetry_reaches_the_client_token_in_query(
    front: Front, accounts: dict[Role, Account]
) -> None:
    device_id = await add_device(front)
    device = DeviceStream(device_id, TelemetrySettings.model_validate({"format": "kv", "separator": ":"}), front.ctx.bus)
    other = DeviceStream(str(uuid.uuid4()), TelemetrySettings(), front.ctx.bus)
    async with stream_of(front, device_id, accounts[Role.VIEWER].token) as ws:
        other.received(["not for this stream"], AT)
        device.received(["ok T:21.3 /200.0 B:20.1 /60.0"], AT)
        frame = await receive(ws)
        assert frame == {
            "type": "telemetry",
            "deviceId": device_id,
            "events": [
                {
                    "deviceId": device_id,
                    "time": "2025-03-01T12:00:00Z",
                    "samples": [
                        {"metric": "T", "value": 21.3},
                        {"metric": "T.target", "value": 200.0},
                        {"metric": "B", "value": 20.1},
                        {"metric": "B.target", "value": 60.0},
                    ],
                    "lines": ["ok T:21.3 /200.0 B:20.1 /60.0"],
                }
            ],
        }
        device.sent("M105", AT)
        assert (await receive(ws))["events"] == [{"deviceId": device_id, "time": "2025-03-01T12:00:00Z", "sent": "M105"}]

        front.ctx.bus.publish(f"device.{device_id}.status", {"id": device_id, "status": "disconnected"})
        assert await receive(ws) == {
            "type": "status",
            "deviceId": device_id,
            "status": {"id": device_id, "status": "disconnected"},
        }

        await ws.send_message(json.dumps({"type": "ping"}))
        assert await receive(ws) == {"type": "pong"}
        await ws.send_message("hello")
        error = await receive(ws)
        assert error["type"] == "error" and error["error"]["code"] == "invalid_format"


async def test_token_in_the_first_message(front: Front, accounts: dict[Role, Account]) -> None:
    device_id = await add_device(front)
    device = DeviceStream(device_id, TelemetrySettings.model_validate({"format": "json"}), front.ctx.bus)
    async with connect(front, f"/ws/myntrix/telemetry/{device_id}") as ws:
        assert (await receive(ws))["type"] == "auth_required"
        await ws.send_message(json.dumps({"type": "auth", "access_token": accounts[Role.VIEWER].token}))
        assert (await receive(ws))["type"] == "auth_ok"
        assert (await receive(ws))["type"] == "ready"
        device.received(['{"t": 1.5}'], AT)
        (event,) = (await receive(ws))["events"]
        assert event["samples"] == [{"metric": "t", "value": 1.5}]


@pytest.mark.parametrize("where", ["query", "message"])
async def test_a_bad_token_is_auth_invalid(front: Front, where: str) -> None:
    device_id = await add_device(front)
    before = front.ctx.bus.subscriber_count
    path = f"/ws/myntrix/telemetry/{device_id}" + ("?token=forged" if where == "query" else "")
    async with connect(front, path) as ws:
        assert (await receive(ws))["type"] == "auth_required"
        if where == "message":
            await ws.send_message(json.dumps({"type": "auth", "access_token": "forged"}))
        assert (await receive(ws))["type"] == "auth_invalid"
        assert await closed_code(ws) == CLOSE_AUTH_FAILED
    assert front.ctx.bus.subscriber_count == before  # refused before it subscribed


@pytest.mark.parametrize("device_id", [str(uuid.uuid4()), "telemetry*", "x" * 300])
async def test_an_unknown_device_is_not_found(front: Front, accounts: dict[Role, Account], device_id: str) -> None:
    before = front.ctx.bus.subscriber_count
    async with connect(front, f"/ws/myntrix/telemetry/{device_id}?token={accounts[Role.VIEWER].token}") as ws:
        assert (await receive(ws))["type"] == "auth_required"
        assert (await receive(ws))["type"] == "auth_ok"
        frame = await receive(ws)
        assert frame["type"] == "error"
        assert frame["error"]["code"] == "not_found"
        assert device_id[:30] in frame["error"]["message"]
        assert frame["error"]["details"] == {"deviceId": device_id[:36]}
        assert await closed_code(ws) == CLOSE_NOT_FOUND
    with trio.fail_after(TIMEOUT):
        while front.ctx.bus.subscriber_count != before:
            await trio.sleep(0.01)


async def test_queued_events_go_out_in_one_frame_and_losses_are_counted(
    front: Front, accounts: dict[Role, Account], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(telemetry_module, "QUEUE_SIZE", 8)
    device_id = await add_device(front)
    device = DeviceStream(device_id, TelemetrySettings.model_validate({"format": "kv"}), front.ctx.bus)
    async with stream_of(front, device_id, accounts[Role.VIEWER].token) as ws:
        # Published without a checkpoint: the stream finds them all queued at once.
        for n in range(5):
            device.received([f"n={n}"], AT)
        frame = await receive(ws)
        assert [event["samples"][0]["value"] for event in frame["events"]] == [0, 1, 2, 3, 4]

        # More than the stream holds: the oldest are lost, counted before the ones kept.
        for n in range(11):
            device.received([f"n={n}"], AT)
        assert await receive(ws) == {"type": "dropped", "deviceId": device_id, "count": 3}
        frame = await receive(ws)
        assert [event["samples"][0]["value"] for event in frame["events"]] == list(range(3, 11))


async def test_closing_the_socket_ends_the_subscriptions(front: Front, accounts: dict[Role, Account]) -> None:
    device_id = await add_device(front)
    before = front.ctx.bus.subscriber_count
    async with stream_of(front, device_id, accounts[Role.VIEWER].token):
        assert front.ctx.bus.subscriber_count == before + 2
    with trio.fail_after(TIMEOUT):
        while front.ctx.bus.subscriber_count != before:
            await trio.sleep(0.01)


async def test_a_sign_in_that_ends_closes_the_stream(front: Front, accounts: dict[Role, Account]) -> None:
    device_id = await add_device(front)
    viewer = await front.ctx.auth.get_user_by_username(accounts[Role.VIEWER].username)
    async with stream_of(front, device_id, accounts[Role.VIEWER].token) as ws:
        await front.ctx.auth.update_user(viewer.id, is_active=False, by="admin-user")
        assert await closed_code(ws) == CLOSE_AUTH_FAILED
