"""Uploads over HTTP, end to end: a multipart body streamed to disk, sent to a simulated printer on
a real pty line by line with a resend, its progress followed in /api/myntrix/jobs; and a cancel."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from web_support import DEVICES, Account, Front, error_of, start_front

from actors.myntrix.devices.simulator import MarlinPrinter, PtySimulator
from vareon_runtime.auth import Role
from vareon_runtime.component import Component

TIMEOUT = 20.0
MARLIN = {"identifyCommand": "M115", "upload": {"mode": "gcode", "lineNumbers": True}}


@pytest.fixture
def front_components() -> tuple[Component, ...]:
    return DEVICES


@pytest.fixture
def printer() -> MarlinPrinter:
    return MarlinPrinter(busy_interval=0.05)


@pytest.fixture
async def marlin(nursery: trio.Nursery, tmp_path: Path, printer: MarlinPrinter) -> PtySimulator:
    simulator = PtySimulator(printer, tmp_path / "dev")
    await nursery.start(simulator.run)
    return simulator


async def connected_printer(
    client: httpx.AsyncClient, accounts: dict[Role, Account], marlin: PtySimulator, configuration: dict[str, Any]
) -> str:
    response = await client.post(
        "/api/myntrix/devices",
        json={"name": "printer", "connectionString": marlin.connection_string, "configuration": configuration},
        headers=accounts[Role.ADMIN].headers,
    )
    assert response.status_code == 201, response.text
    path = f"/api/myntrix/devices/{response.json()['id']}"
    with trio.fail_after(TIMEOUT):
        response = await client.post(f"{path}/connect", headers=accounts[Role.OPERATOR].headers)
    assert response.json()["status"] == "connected", response.text
    return path


async def job_of(client: httpx.AsyncClient, viewer: Account, job_id: str) -> dict[str, Any]:
    response = await client.get("/api/myntrix/jobs?type=device.upload", headers=viewer.headers)
    assert response.status_code == 200, response.text
    (job,) = [job for job in response.json() if job["id"] == job_id]
    return job  # type: ignore[no-any-return]


async def test_a_gcode_file_is_uploaded_and_printed_with_progress_and_a_resend(
    front: Front, client: httpx.AsyncClient, accounts: dict[Role, Account], marlin: PtySimulator, printer: MarlinPrinter
) -> None:
    operator, viewer = accounts[Role.OPERATOR], accounts[Role.VIEWER]
    path = await connected_printer(client, accounts, marlin, MARLIN)
    commands = [f"G1 X{n % 200} Y{(n * 3) % 200} F1500" for n in range(400)]
    body = "; sliced for a test\n\n" + "".join(f"{command} ; move\n" if n % 9 == 0 else f"{command}\n" for n, command in enumerate(commands))
    printer.corrupt_line(123)
    with trio.fail_after(TIMEOUT):
        response = await client.post(
            f"{path}/upload", files={"file": ("../../etc/part.gcode", body.encode(), "text/x-gcode")}, headers=operator.headers
        )
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["type"] == "device.upload" and job["status"] in ("pending", "running", "completed")
    assert job["name"] == "upload part.gcode to printer"  # the client's path is not kept
    assert job["details"]["size"] == len(body.encode()) and job["details"]["mode"] == "gcode"

    seen_progress: set[int] = set()
    with trio.fail_after(TIMEOUT):
        while job["status"] not in ("completed", "failed"):
            await trio.sleep(0.02)
            job = await job_of(client, viewer, job["id"])
            seen_progress.add(job["progress"])
    assert (job["status"], job["progress"]) == ("completed", 100), job["logs"]
    assert len(seen_progress) > 1  # progress moved while it ran
    assert job["details"]["linesSent"] == 400 and job["details"]["resends"] >= 1
    assert "uploaded by operator-user" in job["logs"]
    assert printer.received[2:] == commands  # after M115 and M110 N0: the file, in order, once
    # The file was kept in the data directory's uploads while it was sent, and went with its job.
    assert list((front.ctx.config.data_dir_path / "uploads").iterdir()) == []


async def test_an_upload_is_cancelled_over_http(
    front: Front, client: httpx.AsyncClient, accounts: dict[Role, Account], marlin: PtySimulator, printer: MarlinPrinter
) -> None:
    operator, viewer = accounts[Role.OPERATOR], accounts[Role.VIEWER]
    path = await connected_printer(client, accounts, marlin, {"upload": {"mode": "gcode"}})
    body = "G4 P20\n" * 1000  # 20 s of dwelling
    with trio.fail_after(TIMEOUT):
        response = await client.post(f"{path}/upload", files={"file": ("slow.gcode", body.encode())}, headers=operator.headers)
        assert response.status_code == 202, response.text
        job_id = response.json()["id"]
        while (await job_of(client, viewer, job_id))["progress"] < 1:
            await trio.sleep(0.02)
        response = await client.post(f"{path}/command", json={"command": "M105"}, headers=operator.headers)
        assert response.status_code == 409
        assert error_of(response.json())["details"] == {"jobId": job_id}
        response = await client.delete(f"{path}/upload", headers=viewer.headers)
        assert response.status_code == 403
        response = await client.delete(f"{path}/upload", headers=operator.headers)
    assert response.status_code == 200, response.text
    cancelled = response.json()
    assert (cancelled["id"], cancelled["status"]) == (job_id, "cancelled")
    assert cancelled["logs"].endswith("cancelled by operator-user")
    assert 0 < printer.received.count("G4 P20") < 1000
    assert list((front.ctx.config.data_dir_path / "uploads").iterdir()) == []  # a cancelled upload's file goes too
    with trio.fail_after(TIMEOUT):
        response = await client.post(f"{path}/command", json={"command": "M105"}, headers=operator.headers)
    assert response.status_code == 200 and response.json()["reply"] == ["ok T:21.3 /0.0 B:20.1 /0.0"]


async def test_upload_refusals(
    front: Front, client: httpx.AsyncClient, accounts: dict[Role, Account]
) -> None:
    admin, operator, viewer = accounts[Role.ADMIN], accounts[Role.OPERATOR], accounts[Role.VIEWER]
    response = await client.post(
        "/api/myntrix/devices", json={"name": "spare", "connectionString": "loop://"}, headers=admin.headers
    )
    path = f"/api/myntrix/devices/{response.json()['id']}"
    files = {"file": ("x.gcode", b"G28\n")}
    response = await client.post(f"{path}/upload", files=files, headers=viewer.headers)
    assert response.status_code == 403
    response = await client.post(f"{path}/upload", files=files, headers=operator.headers)
    assert response.status_code == 409
    assert "not connected; connect it before uploading" in error_of(response.json())["message"]
    uploads = front.ctx.config.data_dir_path / "uploads"
    assert not uploads.exists() or not any(uploads.iterdir())  # refused before the body was kept
    response = await client.post(
        "/api/myntrix/devices/00000000-0000-0000-0000-000000000000/upload", files=files, headers=operator.headers
    )
    assert response.status_code == 404


async def test_files_of_uploads_a_crash_interrupted_are_removed_at_boot(nursery: trio.Nursery, tmp_path: Path) -> None:
    uploads = tmp_path / "data" / "uploads"
    uploads.mkdir(parents=True)
    (uploads / "4f1c.gcode.part").write_bytes(b"G1 X1\n")  # cut off while it streamed in
    (uploads / "9a2b.gcode").write_bytes(b"G1 X2\n")  # saved, its job never ended
    front = await start_front(nursery, tmp_path / "data", components=DEVICES)
    try:
        assert list(uploads.iterdir()) == []
    finally:
        await front.stop()
