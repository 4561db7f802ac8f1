"""``/asyncapi.json`` describes the WebSocket endpoints, and what they really send fits it.

The frames are taken from the live endpoints (the handshake, commands, refusals, and events
made by the real publishers: ``DeviceStream``, ``DeviceRow``) and each is validated, strictly,
against the model its ``type`` names in ``SERVER_MESSAGES``; the document is checked to be made
of those models. ``/docs/`` redirects to ``/docs``, whose OpenAPI description links the document.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import trio
from pydantic import BaseModel, TypeAdapter
from test_telemetry_stream import add_device, connect, receive, stream_of
from web_support import DEVICES, Account, Front

from actors.myntrix.devices import DeviceDesiredState, DeviceStatus, status_topic
from actors.myntrix.devices.configuration import TelemetrySettings
from actors.myntrix.devices.row import DeviceRow
from actors.myntrix.devices.telemetry import DeviceStream
from vareon_runtime.auth import Role
from vareon_runtime.component import Component
from web import telemetry, websocket

AT = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


@pytest.fixture
def front_components() -> tuple[Component, ...]:
    return DEVICES


def _models_by_type(models: tuple[type[BaseModel], ...]) -> dict[str, list[type[BaseModel]]]:
    found: dict[str, list[type[BaseModel]]] = {}
    for model in models:
        (kind,) = model.model_fields["type"].annotation.__args__  # type: ignore[union-attr]
        found.setdefault(kind, []).append(model)
    return found


def _fits(models: tuple[type[BaseModel], ...], frame: dict[str, Any]) -> None:
    """Assert ``frame`` is valid, strictly (no extra field, none missing), for a model of its type."""
    candidates = _models_by_type(models).get(frame["type"])
    assert candidates, f"no model for a frame of type {frame['type']!r}: {frame}"
    errors = []
    for model in candidates:
        try:
            TypeAdapter(model).validate_python(frame, strict=False)
            return
        except ValueError as exc:
            errors.append(str(exc))
    raise AssertionError(f"{frame} fits no model of its type:\n" + "\n".join(errors))


async def test_the_events_endpoint_sends_only_what_the_document_says(
    front: Front, accounts: dict[Role, Account]
) -> None:
    frames: list[dict[str, Any]] = []
    async with connect(front, "/api/websocket") as ws:

        async def send(frame: Any) -> dict[str, Any]:
            await ws.send_message(json.dumps(frame))
            answer = await receive(ws)
            frames.append(answer)
            return answer

        frames.append(await receive(ws))
        await send({"type": "auth", "access_token": accounts[Role.VIEWER].token})
        await send({"id": 1, "type": "ping"})
        await send({"id": 2, "type": "subscribe", "topic": "demo.*"})
        await send({"id": 2, "type": "ping"})  # id_reuse
        await send({"type": "ping"})  # no id: the error's id is null
        await send({"id": 3, "type": "unsubscribe", "subscription": 9})
        front.ctx.bus.publish("demo.thing", {"when": AT, "values": {1, 2}, "raw": b"\x00"})
        frames.append(await receive(ws))
    assert [f["type"] for f in frames] == ["auth_required", "auth_ok", "pong", "result", "result", "result", "result", "event"]
    for frame in frames:
        _fits(websocket.SERVER_MESSAGES, frame)

    async with connect(front, "/api/websocket") as ws:
        await receive(ws)
        await ws.send_message(json.dumps({"type": "auth", "access_token": "not a token"}))
        refused = await receive(ws)
    _fits(websocket.SERVER_MESSAGES, refused)
    assert refused["type"] == "auth_invalid"


async def test_the_telemetry_stream_sends_only_what_the_document_says(
    front: Front, accounts: dict[Role, Account]
) -> None:
    device_id = await add_device(front)
    stream = DeviceStream(device_id, TelemetrySettings.model_validate({"format": "kv", "separator": ":"}), front.ctx.bus)
    row = DeviceRow(device_id, front.ctx.store, front.ctx.bus, status_topic(device_id))
    frames: list[dict[str, Any]] = []
    async with stream_of(front, device_id, accounts[Role.VIEWER].token) as ws:
        frames.append({"type": "ready", "deviceId": device_id})
        stream.sent("M105", AT)
        stream.received(["ok T:21.3 /200.0 B:20.1 /60.0"], AT)
        await row.save(
            status=DeviceStatus.CONNECTED, desired=DeviceDesiredState.CONNECTED, last_seen=AT,
            firmware_version="Marlin 2.1.2", last_error=None, updated_at=AT,
        )
        kinds: set[str] = set()
        with trio.fail_after(10):
            while not {"telemetry", "status"} <= kinds:
                frame = await receive(ws)
                frames.append(frame)
                kinds.add(frame["type"])
        await ws.send_message(json.dumps({"type": "ping"}))
        frames.append(await receive(ws))
        await ws.send_message("not a ping")
        frames.append(await receive(ws))
    async with connect(front, f"/ws/myntrix/telemetry/{'0' * 36}?token={accounts[Role.VIEWER].token}") as ws:
        for _ in range(3):
            frames.append(await receive(ws))
    events = [event for frame in frames if frame["type"] == "telemetry" for event in frame["events"]]
    assert any("sent" in event for event in events) and any(event.get("samples") for event in events)
    assert {f["type"] for f in frames} == {"ready", "telemetry", "status", "pong", "error", "auth_required", "auth_ok"}
    for frame in frames:
        _fits(telemetry.SERVER_MESSAGES, frame)


async def test_the_document_is_asyncapi_3_made_of_the_frame_models(client: httpx.AsyncClient) -> None:
    response = await client.get("/asyncapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    document = response.json()
    assert document["asyncapi"] == "3.0.0"
    assert document["servers"]["runtime"]["host"] == client.base_url.netloc.decode()
    channels = document["channels"]
    assert channels["events"]["address"] == "/api/websocket"
    assert channels["telemetry"]["address"] == "/ws/myntrix/telemetry/{deviceId}"
    for name, models in (
        ("events", websocket.CLIENT_MESSAGES + websocket.SERVER_MESSAGES),
        ("telemetry", telemetry.CLIENT_MESSAGES + telemetry.SERVER_MESSAGES),
    ):
        assert set(channels[name]["messages"]) == {model.__name__ for model in models}
        for model in models:
            message = document["components"]["messages"][model.__name__]
            schema = document["components"]["schemas"][model.__name__]
            assert message["payload"] == {"$ref": f"#/components/schemas/{model.__name__}"}
            assert set(schema["properties"]) == set(model.model_json_schema(by_alias=True)["properties"])
    for ref in _refs(document):  # every reference points somewhere
        node: Any = document
        for part in ref.removeprefix("#/").split("/"):
            assert part in node, f"{ref} points nowhere"
            node = node[part]
    assert "``" not in json.dumps(document)  # Markdown, not reST
    topics = [entry["topic"] for entry in channels["events"]["x-topics"]]
    assert "agent.<id>.status" in topics and len(topics) == len(set(topics))
    actions = {op["action"] for op in document["operations"].values()}
    assert actions == {"send", "receive"}


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _refs(value)]
    return []


async def test_docs_link_the_document_and_a_trailing_slash_redirects(client: httpx.AsyncClient) -> None:
    description = (await client.get("/openapi.json")).json()["info"]["description"]
    assert "[/asyncapi.json](/asyncapi.json)" in description
    for path, target in (("/docs/", "/docs"), ("/docs/?x=1", "/docs?x=1")):
        response = await client.get(path)
        assert response.status_code == 308, response.text
        assert response.headers["location"] == target
    assert (await client.get("/docs/", follow_redirects=True)).status_code == 200
