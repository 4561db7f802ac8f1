"""``GET /api/myntrix/visualization-data`` over a live Hypercorn."""

from __future__ import annotations

import uuid

import httpx
import trio
from sqlalchemy.orm import Session
from web_support import Account, Front, error_of

from actors.myntrix.devices.models import DeviceRecord
from actors.myntrix.visualization import layout_position
from vareon_runtime.auth import Role

TIMEOUT = 10
PATH = "/api/myntrix/visualization-data"


async def test_viewer_reads_the_scene(front: Front, client: httpx.AsyncClient, accounts: dict[Role, Account]) -> None:
    device_id = str(uuid.uuid4())

    def write(session: Session) -> None:
        session.add(
            DeviceRecord(
                id=device_id, name="bench printer", type="printer", connection_string="tcp://127.0.0.1:1",
                status="disconnected", desired_state="disconnected", configuration={},
            )
        )

    with trio.fail_after(TIMEOUT):
        await front.ctx.store.write(write)
        response = await client.get(PATH, headers=accounts[Role.VIEWER].headers)
        assert response.status_code == 200
        body = response.json()
        refused = await client.get(PATH)
    assert set(body) == {"nodes", "links", "generatedAt"}
    runtime, device = body["nodes"]
    assert runtime["id"] == "runtime" and runtime["kind"] == "runtime"
    expected = layout_position(device_id, "device")
    assert device == {
        "id": device_id,
        "kind": "device",
        "name": "bench printer",
        "type": "printer",
        "status": "disconnected",
        "color": "#6b7280",
        "active": False,
        "animation": "none",
        "health": None,
        "position": {"x": expected.x, "y": expected.y, "z": expected.z},
        "positionSource": "layout",
        "lastActivity": None,
        "firmwareVersion": None,
    }
    assert body["links"] == [{"source": "runtime", "target": device_id, "kind": "hub", "active": False}]
    assert refused.status_code == 401
    assert error_of(refused.json())["code"] == "unauthorized"
