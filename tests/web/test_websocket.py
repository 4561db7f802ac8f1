"""The multiplexed WebSocket endpoint, through a live Hypercorn with a real WebSocket client."""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import trio
import trio.testing
from trio_websocket import ConnectionClosed, WebSocketConnection, wrap_client_stream

import web.websocket as ws_module
from vareon_runtime import RuntimeContext
from vareon_runtime.auth import Role
from web.websocket import CLOSE_AUTH_FAILED
from web_support import Account, Front

TIMEOUT = 10  # seconds any single step may take before the test fails instead of hanging
RECEIVE_BUFFER = 256 * 1024  # the slow client's kernel receive buffer (SO_RCVBUF)


# --- the live runtime ---------------------------------------------------------------------------


@dataclass
class Live:
    """The running runtime seen from a WebSocket client."""

    ctx: RuntimeContext
    base: str  # ws://127.0.0.1:<port>
    accounts: dict[Role, Account]

    @property
    def url(self) -> str:
        return f"{self.base}/api/websocket"

    def token(self, role: Role = Role.VIEWER) -> str:
        return self.accounts[role].token


@pytest.fixture
async def live(front: Front, accounts: dict[Role, Account]) -> Live:
    return Live(front.ctx, front.base_url.replace("http://", "ws://", 1), accounts)


# --- client helpers ----------------------------------------------------------------------------


async def receive(ws: WebSocketConnection) -> dict[str, Any]:
    with trio.fail_after(TIMEOUT):
        message = json.loads(await ws.get_message())
    assert isinstance(message, dict)
    return message


async def send(ws: WebSocketConnection, message: dict[str, Any] | str) -> None:
    await ws.send_message(message if isinstance(message, str) else json.dumps(message))


async def command(ws: WebSocketConnection, message: dict[str, Any] | str) -> dict[str, Any]:
    await send(ws, message)
    return await receive(ws)


async def closed_code(ws: WebSocketConnection) -> int:
    with trio.fail_after(TIMEOUT), pytest.raises(ConnectionClosed) as info:
        await ws.get_message()
    return info.value.reason.code


@asynccontextmanager
async def connect(
    url: str, *, receive_buffer: int | None = None
) -> AsyncIterator[WebSocketConnection]:
    """A trio-websocket client connection to ``url``.

    This is ``open_websocket_url`` plus closing the TCP stream at the end: trio-websocket 0.12
    leaves the client's socket open when the server closes first (a ResourceWarning, an error
    here). ``receive_buffer`` shrinks the client's kernel receive buffer, so a client that stops
    reading stalls the server's writes soon instead of after megabytes.
    """
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    resource = f"{parts.path}?{parts.query}" if parts.query else parts.path
    with trio.fail_after(TIMEOUT):
        stream = await trio.open_tcp_stream(parts.hostname, parts.port)
    async with stream, trio.open_nursery() as nursery:
        if receive_buffer is not None:
            stream.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        ws = await wrap_client_stream(nursery, stream, parts.hostname, resource)
        try:
            yield ws
        finally:
            with trio.fail_after(TIMEOUT):
                await ws.aclose()
            await stream.aclose()  # ends the client's reader task too


@asynccontextmanager
async def authed(
    live: Live, *, receive_buffer: int | None = None
) -> AsyncIterator[WebSocketConnection]:
    """A connection past ``auth_ok``."""
    async with connect(live.url, receive_buffer=receive_buffer) as ws:
        assert await receive(ws) == {"type": "auth_required", "version": live.ctx.version}
        await send(ws, {"type": "auth", "access_token": live.token()})
        assert await receive(ws) == {"type": "auth_ok", "version": live.ctx.version}
        yield ws


def ok(msg_id: int) -> dict[str, Any]:
    return {"id": msg_id, "type": "result", "success": True, "result": None}


def failure(result: dict[str, Any]) -> tuple[Any, str]:
    """The id and error code of a failed command's result."""
    assert result["type"] == "result" and result["success"] is False, result
    return result["id"], result["error"]["code"]


async def wait_until(predicate: Callable[[], bool]) -> None:
    # The server's cleanup after a close signals nothing a client could await: poll, bounded.
    with trio.fail_after(TIMEOUT):
        while not predicate():
            await trio.sleep(0.005)


# --- authentication ----------------------------------------------------------------------------


async def test_auth_message_gets_auth_ok_then_commands_work(live: Live) -> None:
    async with authed(live) as ws:
        assert await command(ws, {"id": 1, "type": "ping"}) == {"id": 1, "type": "pong"}


async def test_token_query_parameter_authenticates_without_a_message(live: Live) -> None:
    async with connect(f"{live.url}?token={live.token()}") as ws:
        assert await receive(ws) == {"type": "auth_required", "version": live.ctx.version}
        assert await receive(ws) == {"type": "auth_ok", "version": live.ctx.version}
        assert await command(ws, {"id": 1, "type": "ping"}) == {"id": 1, "type": "pong"}


async def test_invalid_token_gets_auth_invalid_and_close(live: Live) -> None:
    async with connect(live.url) as ws:
        await receive(ws)
        await send(ws, {"type": "auth", "access_token": live.token() + "x"})
        assert await receive(ws) == {"type": "auth_invalid", "message": "invalid token"}
        assert await closed_code(ws) == CLOSE_AUTH_FAILED


async def test_invalid_query_token_gets_auth_invalid_and_close(live: Live) -> None:
    async with connect(f"{live.url}?token=not-a-jwt") as ws:
        await receive(ws)
        assert await receive(ws) == {"type": "auth_invalid", "message": "invalid token"}
        assert await closed_code(ws) == CLOSE_AUTH_FAILED


async def test_a_disabled_accounts_token_gets_auth_invalid(live: Live) -> None:
    user = await live.ctx.auth.get_user_by_username(live.accounts[Role.VIEWER].username)
    await live.ctx.auth.update_user(user.id, is_active=False)
    async with connect(f"{live.url}?token={live.token()}") as ws:
        await receive(ws)
        assert await receive(ws) == {"type": "auth_invalid", "message": "account disabled or removed; sign in again"}
        assert await closed_code(ws) == CLOSE_AUTH_FAILED


@pytest.mark.parametrize(
    ("first", "why"),
    [
        ({"id": 1, "type": "ping"}, "the first message must be of type 'auth', not 'ping'"),
        ({"type": "auth"}, "needs access_token as a non-empty string, it is missing"),
        ({"type": "auth", "access_token": 42}, "as a non-empty string, not a number"),
        ("not json", "the first message is not JSON"),
        ("[1, 2]", "the first message is a JSON array, not an object"),
    ],
)
async def test_anything_but_auth_first_gets_auth_invalid_and_close(
    live: Live, first: dict[str, Any] | str, why: str
) -> None:
    async with connect(live.url) as ws:
        await receive(ws)
        await send(ws, first)
        reply = await receive(ws)
        assert reply["type"] == "auth_invalid"
        assert why in reply["message"]
        assert reply["message"].endswith('{"type": "auth", "access_token": "<access token>"} first')
        assert await closed_code(ws) == CLOSE_AUTH_FAILED


@pytest.mark.parametrize(
    ("first", "why"),
    [
        ('{"type": "auth", "access_token": "\\ud800"}', "the first message is not JSON"),
        ("[" * 5000 + "]" * 5000, "the first message is not JSON"),
        ('{"type": "auth", "access_token": "\u00e9t\u00e9"}', "invalid token"),
        ('{"type": "auth", "access_token": "\u00e9.\u00e9.\u00e9"}', "invalid token"),
    ],
    ids=["lone-surrogate-token", "deeply-nested", "non-ascii-token", "non-ascii-jwt-shape"],
)
async def test_hostile_auth_message_gets_auth_invalid_not_a_crash(
    live: Live, first: str, why: str, log_records: Any
) -> None:
    async with connect(live.url) as ws:
        await receive(ws)
        await send(ws, first)
        reply = await receive(ws)
        assert reply["type"] == "auth_invalid"
        assert reply["message"].startswith(why)
        assert await closed_code(ws) == CLOSE_AUTH_FAILED
    assert not log_records.messages(logging.ERROR)


@pytest.mark.parametrize("token", ["%ED%A0%80", "%C3%A9t%C3%A9", "%FF.%FE.%FD"])
async def test_hostile_query_token_gets_auth_invalid(live: Live, token: str, log_records: Any) -> None:
    async with connect(f"{live.url}?token={token}") as ws:
        await receive(ws)
        assert await receive(ws) == {"type": "auth_invalid", "message": "invalid token"}
        assert await closed_code(ws) == CLOSE_AUTH_FAILED
    assert not log_records.messages(logging.ERROR)


async def test_no_auth_message_in_time_gets_auth_invalid_and_close(
    live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ws_module, "AUTH_TIMEOUT", 0.05)
    async with connect(live.url) as ws:
        await receive(ws)
        reply = await receive(ws)
        assert reply["type"] == "auth_invalid"
        assert reply["message"].startswith("no auth message within 0.05 s")
        assert await closed_code(ws) == CLOSE_AUTH_FAILED


# --- commands ----------------------------------------------------------------------------------


async def test_ids_must_increase(live: Live) -> None:
    async with authed(live) as ws:
        assert await command(ws, {"id": 5, "type": "ping"}) == {"id": 5, "type": "pong"}
        assert failure(await command(ws, {"id": 5, "type": "ping"})) == (5, "id_reuse")
        assert failure(await command(ws, {"id": 2, "type": "ping"})) == (2, "id_reuse")
        assert await command(ws, {"id": 6, "type": "ping"}) == {"id": 6, "type": "pong"}


@pytest.mark.parametrize(
    "frame",
    [
        "{not json",
        "[1, 2]",
        '"ping"',
        json.dumps({"type": "ping"}),
        json.dumps({"id": "1", "type": "ping"}),
        json.dumps({"id": True, "type": "ping"}),
        json.dumps({"id": 1.5, "type": "ping"}),
        "[" * 5000 + "]" * 5000,
        '{"id": 1, "type": ' + "[" * 5000 + "]" * 5000 + "}",
        '{"id": "\\ud800", "type": "ping"}',
        '{"id": NaN, "type": "ping"}',
    ],
)
async def test_malformed_frame_gets_an_error_result_and_the_connection_lives(
    live: Live, frame: str, log_records: Any
) -> None:
    async with authed(live) as ws:
        assert failure(await command(ws, frame)) == (None, "invalid_format")
        assert await command(ws, {"id": 1, "type": "ping"}) == {"id": 1, "type": "pong"}
    assert not log_records.messages(logging.ERROR)


async def test_binary_frame_gets_an_error_result(live: Live) -> None:
    async with authed(live) as ws:
        await ws.send_message(b'{"id": 1, "type": "ping"}')
        assert failure(await receive(ws)) == (None, "invalid_format")
        assert await command(ws, {"id": 1, "type": "ping"}) == {"id": 1, "type": "pong"}


async def test_unknown_command(live: Live) -> None:
    async with authed(live) as ws:
        result = await command(ws, {"id": 1, "type": "subscribe_events"})
        assert failure(result) == (1, "unknown_command")
        assert "ping, subscribe, unsubscribe" in result["error"]["message"]
        assert await command(ws, {"id": 2, "type": "ping"}) == {"id": 2, "type": "pong"}


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ({"type": "subscribe"}, "topic: Field required"),
        ({"type": "subscribe", "topic": 7}, "topic: Input should be a valid string"),
        ({"type": "subscribe", "topic": "a", "topics": "b"}, "topics: Extra inputs"),
        ({"type": "unsubscribe", "subscription": "1"}, "subscription: Input should be a valid"),
        ({"type": "subscribe", "topic": "a.*.b"}, "topic pattern 'a.*.b' is invalid"),
        ({"type": "subscribe", "topic": ""}, "topic pattern '' is invalid"),
    ],
)
async def test_bad_command_fields_get_invalid_format(
    live: Live, message: dict[str, Any], expected: str
) -> None:
    before = live.ctx.bus.subscriber_count
    async with authed(live) as ws:
        result = await command(ws, {"id": 1, **message})
        assert failure(result) == (1, "invalid_format")
        assert expected in result["error"]["message"]
        assert live.ctx.bus.subscriber_count == before


# --- subscriptions -----------------------------------------------------------------------------


async def test_subscribe_delivers_events_with_the_command_id(live: Live) -> None:
    bus = live.ctx.bus
    async with authed(live) as ws:
        subscribe = {"id": 3, "type": "subscribe", "topic": "test.telemetry.*"}
        assert await command(ws, subscribe) == ok(3)
        bus.publish("test.agent.a.log", "not for us")
        when = datetime(2025, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
        published = bus.publish(
            "test.telemetry.device.d1",
            {
                "when": when,
                "tags": ("a", "b"),
                "raw": b"\x00",
                "nan": float("nan"),
                "path": Path("/x"),
            },
        )
        message = await receive(ws)
        assert message == {
            "id": 3,
            "type": "event",
            "event": {
                "topic": "test.telemetry.device.d1",
                "data": {
                    "when": "2025-01-02T03:04:05Z",
                    "tags": ["a", "b"],
                    "raw": "AA==",
                    "nan": None,
                    "path": "/x",
                },
                "time": message["event"]["time"],
                "seq": published.seq,
            },
        }
        assert datetime.fromisoformat(message["event"]["time"]) == published.time
        assert message["event"]["time"].endswith("Z")


async def test_event_whose_data_cannot_be_encoded_still_arrives_saying_why(live: Live) -> None:
    bus = live.ctx.bus
    async with authed(live) as ws:
        assert await command(ws, {"id": 1, "type": "subscribe", "topic": "test.*"}) == ok(1)
        bus.publish("test.bad", {frozenset({1}): "a key JSON cannot have"})
        bus.publish("test.good", {"fine": True})
        bad = (await receive(ws))["event"]
        assert (bad["topic"], bad["data"]) == ("test.bad", None)
        assert bad["error"].startswith("the event's data cannot be encoded as JSON")
        assert (await receive(ws))["event"]["data"] == {"fine": True}  # the connection lives


async def test_events_of_several_subscriptions_carry_their_own_ids(live: Live) -> None:
    bus = live.ctx.bus
    async with authed(live) as ws:
        assert await command(ws, {"id": 1, "type": "subscribe", "topic": "test.a"}) == ok(1)
        assert await command(ws, {"id": 2, "type": "subscribe", "topic": "test.*"}) == ok(2)
        bus.publish("test.a", 1)
        bus.publish("test.b", 2)
        got = {(m["id"], m["event"]["topic"]) for m in [await receive(ws) for _ in range(3)]}
        assert got == {(1, "test.a"), (2, "test.a"), (2, "test.b")}


async def test_unsubscribe_stops_events_and_releases_the_bus_subscription(live: Live) -> None:
    bus = live.ctx.bus
    before = bus.subscriber_count
    async with authed(live) as ws:
        assert await command(ws, {"id": 1, "type": "subscribe", "topic": "test.status.*"}) == ok(1)
        assert bus.subscriber_count == before + 1
        bus.publish("test.status.actor", "first")
        assert (await receive(ws))["event"]["data"] == "first"

        assert await command(ws, {"id": 2, "type": "unsubscribe", "subscription": 1}) == ok(2)
        assert bus.subscriber_count == before
        bus.publish("test.status.actor", "after unsubscribe")
        # The next frame answers the ping: no event of the closed subscription came before it.
        assert await command(ws, {"id": 3, "type": "ping"}) == {"id": 3, "type": "pong"}

        result = await command(ws, {"id": 4, "type": "unsubscribe", "subscription": 1})
        assert failure(result) == (4, "not_found")
        assert await command(ws, {"id": 5, "type": "subscribe", "topic": "test.status.*"}) == ok(5)
        bus.publish("test.status.actor", "again")
        message = await receive(ws)
        assert (message["id"], message["event"]["data"]) == (5, "again")


async def test_subscriptions_die_with_the_socket(live: Live) -> None:
    bus = live.ctx.bus
    before = bus.subscriber_count
    async with authed(live) as ws:
        for msg_id, topic in enumerate(["test.a", "test.b.*", "*"], start=1):
            subscribe = {"id": msg_id, "type": "subscribe", "topic": topic}
            assert await command(ws, subscribe) == ok(msg_id)
        assert bus.subscriber_count == before + 3
    await wait_until(lambda: bus.subscriber_count == before)
    bus.publish("test.a", "nobody listens")  # no task left to fail on a closed socket


async def test_too_many_subscriptions(live: Live, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ws_module, "MAX_SUBSCRIPTIONS", 2)
    async with authed(live) as ws:
        assert await command(ws, {"id": 1, "type": "subscribe", "topic": "test.a"}) == ok(1)
        assert await command(ws, {"id": 2, "type": "subscribe", "topic": "test.a"}) == ok(2)
        result = await command(ws, {"id": 3, "type": "subscribe", "topic": "test.a"})
        assert failure(result) == (3, "too_many_subscriptions")
        assert await command(ws, {"id": 4, "type": "unsubscribe", "subscription": 1}) == ok(4)
        assert await command(ws, {"id": 5, "type": "subscribe", "topic": "test.a"}) == ok(5)


# --- a slow client -----------------------------------------------------------------------------


def _server_send_buffer_max() -> int:
    """The most the server's kernel may hold for one socket that does not drain (Linux)."""
    try:
        return int(Path("/proc/sys/net/ipv4/tcp_wmem").read_text().split()[2])
    except (OSError, ValueError, IndexError):
        return 16 * 2**20


async def test_slow_client_loses_oldest_events_with_a_count_and_stalls_nobody(
    live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    queue_size = 4
    monkeypatch.setattr(ws_module, "SUBSCRIPTION_QUEUE_SIZE", queue_size)
    bus = live.ctx.bus
    pad = "x" * 32 * 1024
    # Enough to overflow everything between the bus and the stalled client twice over.
    buffered = (
        _server_send_buffer_max() + 2 * RECEIVE_BUFFER + ws_module.OUTBOUND_QUEUE_SIZE * len(pad)
    )
    count = 2 * (buffered // len(pad)) + queue_size

    async with authed(live) as fast, authed(live, receive_buffer=RECEIVE_BUFFER) as slow:
        assert await command(fast, {"id": 1, "type": "subscribe", "topic": "test.load.x"}) == ok(1)
        assert await command(slow, {"id": 7, "type": "subscribe", "topic": "test.load.*"}) == ok(7)
        # The slow client reads nothing from here on. Every publish returns at once (it is
        # synchronous), and the fast client gets each event before the next is published.
        for i in range(count):
            bus.publish("test.load.x", {"i": i, "pad": pad})
            message = await receive(fast)
            assert (message["id"], message["event"]["data"]["i"]) == (1, i)

        received: list[int] = []
        dropped = 0
        with trio.fail_after(TIMEOUT):
            while not received or received[-1] != count - 1:
                message = await receive(slow)
                assert message["id"] == 7
                if message["type"] == "dropped":
                    dropped += message["count"]
                else:
                    received.append(message["event"]["data"]["i"])
        assert dropped > 0
        assert received == sorted(received) and received[-1] == count - 1  # the newest are kept
        assert len(received) + dropped == count  # every loss is counted
        assert await command(slow, {"id": 8, "type": "ping"}) == {"id": 8, "type": "pong"}


async def test_a_client_that_stops_reading_cannot_hold_up_the_runtime_stop(
    live: Live, front: Front, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Hypercorn's socket write is shielded: without the server cutting the connection after the
    # graceful timeout, this stop would wait for the stalled client forever.
    monkeypatch.setattr(ws_module, "SUBSCRIPTION_QUEUE_SIZE", 4)
    pad = "x" * 64 * 1024
    async with authed(live, receive_buffer=RECEIVE_BUFFER) as stalled:
        assert await command(stalled, {"id": 1, "type": "subscribe", "topic": "test.stall"}) == ok(1)
        # Publish until the server's write to the stalled client is stuck (each event is
        # written as far as it goes before the next; the sockets' buffers fill up).
        for i in range(2 * (_server_send_buffer_max() + 2 * RECEIVE_BUFFER) // len(pad)):
            live.ctx.bus.publish("test.stall", {"i": i, "pad": pad})
            await trio.testing.wait_all_tasks_blocked()
        with trio.fail_after(front.server.graceful_timeout + 15):
            await front.stop()
        with pytest.raises(ConnectionClosed):
            while True:
                await stalled.get_message()


@pytest.mark.parametrize(
    ("topic", "ok_"),
    [
        ("agent.*", True),
        ("*", True),
        ("job.0b7c1d2e-4f5a-4b6c-8d9e-0f1a2b3c4d5e", True),
        ("a" * 257, False),
        ("agent.\nCRITICAL forged", False),
        ("agent.*.status", False),
        ("", False),
        ("a..b", False),
    ],
)
async def test_topics_have_a_pattern_and_a_length_limit(live: Live, topic: str, ok_: bool) -> None:
    async with authed(live) as ws:
        await send(ws, {"id": 1, "type": "subscribe", "topic": topic})
        reply = await receive(ws)
        assert reply["success"] is ok_, reply
        if not ok_:
            assert reply["error"]["code"] == "invalid_format"
