"""Uploads through the real device route, ``POST /api/myntrix/devices/{id}/upload``, to a
simulated Marlin printer on a pty, connected: the whole file arrives, the name is made safe,
and the refusals (413 before the body, 400 for a malformed form, 415) leave nothing on disk."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest
import trio
from web_support import Account, DEVICES, Front, error_of

from actors.myntrix.devices.simulator import MarlinPrinter, PtySimulator
from vareon_runtime.auth import Role
from vareon_runtime.component import Component

UPLOAD_LIMIT = 200_000
TIMEOUT = 30


@pytest.fixture
def front_environ() -> dict[str, str]:
    return {"VAREON_SERVER_MAX_BODY_SIZE": "4096", "VAREON_SERVER_UPLOAD_MAX_SIZE": str(UPLOAD_LIMIT)}


@pytest.fixture
def front_components() -> tuple[Component, ...]:
    return DEVICES


@pytest.fixture
def printer() -> MarlinPrinter:
    return MarlinPrinter()


@pytest.fixture
async def device_id(
    nursery: trio.Nursery,
    tmp_path: Path,
    printer: MarlinPrinter,
    client: httpx.AsyncClient,
    accounts: dict[Role, Account],
) -> str:
    simulator = PtySimulator(printer, tmp_path / "dev")
    await nursery.start(simulator.run)
    created = await client.post(
        "/api/myntrix/devices",
        headers=accounts[Role.ADMIN].headers,
        json={
            "name": "printer",
            "type": "printer",
            "connectionString": simulator.connection_string,
            "configuration": {"upload": {"mode": "gcode", "lineNumbers": True}},
        },
    )
    assert created.status_code == 201, created.text
    device_id = str(created.json()["id"])
    with trio.fail_after(TIMEOUT):
        connected = await client.post(f"/api/myntrix/devices/{device_id}/connect", headers=accounts[Role.OPERATOR].headers)
    assert connected.json()["status"] == "connected", connected.text
    return device_id


def uploads_left(front: Front) -> list[str]:
    directory = front.ctx.config.data_dir_path / "uploads"
    return sorted(os.listdir(directory)) if directory.exists() else []


async def test_a_gcode_file_reaches_the_printer_under_a_safe_name(
    client: httpx.AsyncClient, accounts: dict[Role, Account], device_id: str, printer: MarlinPrinter
) -> None:
    operator = accounts[Role.OPERATOR].headers
    with trio.fail_after(TIMEOUT):
        commands = [f"G1 X{n} Y{n % 9}" for n in range(1, 201)]
        text = "; sliced\n" + "".join(f"{command} ; move\n" for command in commands)
        response = await client.post(
            f"/api/myntrix/devices/{device_id}/upload",
            headers=operator,
            files={"file": ("../../../etc/part.gcode", text.encode(), "text/x-gcode")},
        )
        assert response.status_code == 202, response.text
        job = response.json()
        while job["status"] in ("pending", "running"):
            await trio.sleep(0.05)
            jobs = await client.get("/api/myntrix/jobs", headers=operator, params={"limit": 500})
            job = next(item for item in jobs.json() if item["id"] == job["id"])
    assert job["status"] == "completed", job
    assert printer.received[-201:] == ["M110 N0", *commands]
    shown = f"{job['name']} {job['details']}"
    assert "part.gcode" in shown and ".." not in shown and "/etc" not in shown


async def test_a_body_over_the_upload_limit_is_413_before_it_is_read(
    front: Front, accounts: dict[Role, Account], device_id: str
) -> None:
    assert front.server.port is not None
    head = (
        f"POST /api/myntrix/devices/{device_id}/upload HTTP/1.1\r\nHost: test\r\n"
        f"Authorization: Bearer {accounts[Role.OPERATOR].token}\r\n"
        f"Content-Type: multipart/form-data; boundary=B\r\nContent-Length: {UPLOAD_LIMIT + 1}\r\n\r\n--B\r\n"
    ).encode()
    with trio.fail_after(TIMEOUT):
        stream = await trio.open_tcp_stream("127.0.0.1", front.server.port)
        async with stream:
            await stream.send_all(head)
            reply = b""
            while b"}}" not in reply:
                chunk = await stream.receive_some(65536)
                assert chunk, reply
                reply += chunk
    assert reply.startswith(b"HTTP/1.1 413")
    assert b'"limit":200000' in reply and b"upload_max_size" in reply
    assert uploads_left(front) == []


@pytest.mark.parametrize(
    ("content_type", "body", "status"),
    [
        ("multipart/form-data; boundary=B", b'--B\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n\r\nG28', 400),
        ("multipart/form-data; boundary=B", b'--B\r\nContent-Disposition: form-data; name="note"\r\n\r\nhi\r\n--B--\r\n', 400),
        ("application/octet-stream", b"G28\n", 415),
    ],
)
async def test_a_malformed_upload_is_refused_and_leaves_nothing(
    client: httpx.AsyncClient,
    accounts: dict[Role, Account],
    front: Front,
    device_id: str,
    content_type: str,
    body: bytes,
    status: int,
) -> None:
    response = await client.post(
        f"/api/myntrix/devices/{device_id}/upload",
        headers={**accounts[Role.OPERATOR].headers, "Content-Type": content_type},
        content=body,
    )
    assert response.status_code == status, response.text
    error_of(response.json())
    assert uploads_left(front) == []
