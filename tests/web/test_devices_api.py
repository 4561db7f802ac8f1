"""/api/myntrix/devices over HTTP, on a live runtime running the devices module, against simulated
devices on a real pty and a real TCP port."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from sqlalchemy import select
from sqlalchemy.orm import Session
from web_support import Account, DEVICES, Front, error_of, start_front

from actors.myntrix.devices import DeviceRecord, Devices, DeviceStatus
from actors.myntrix.devices.simulator import MARLIN_FIRMWARE, SCPI_IDENTITY, MarlinPrinter, PtySimulator, ScpiInstrument, TcpSimulator
from vareon_runtime.auth import Role
from vareon_runtime.component import Component

TIMEOUT = 20.0
MARLIN = {"identifyCommand": "M115", "upload": {"mode": "gcode", "lineNumbers": True}}
SCPI = {"identifyCommand": "*IDN?", "replyTerminator": None}


@pytest.fixture
def front_components() -> tuple[Component, ...]:
    return DEVICES


@pytest.fixture
def front_environ() -> dict[str, str]:
    return {"VAREON_MYNTRIX_DEVICE_RECONNECT_MAX": "0.5", "VAREON_MYNTRIX_DEVICE_COMMAND_TIMEOUT": "3"}


@pytest.fixture
def printer() -> MarlinPrinter:
    return MarlinPrinter(busy_interval=0.05)


@pytest.fixture
async def marlin(nursery: trio.Nursery, tmp_path: Path, printer: MarlinPrinter) -> PtySimulator:
    simulator = PtySimulator(printer, tmp_path / "dev")
    await nursery.start(simulator.run)
    return simulator


@pytest.fixture
async def scpi(nursery: trio.Nursery) -> TcpSimulator:
    simulator = TcpSimulator(ScpiInstrument())
    await nursery.start(simulator.run)
    return simulator


async def create(client: httpx.AsyncClient, admin: Account, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post("/api/myntrix/devices", json=body, headers=admin.headers)
    assert response.status_code == 201, response.text
    device: dict[str, Any] = response.json()
    return device


async def until(client: httpx.AsyncClient, path: str, account: Account, predicate: Callable[[Any], bool]) -> Any:
    """The first body of ``GET path`` that satisfies ``predicate``."""
    with trio.fail_after(TIMEOUT):
        while True:
            response = await client.get(path, headers=account.headers)
            assert response.status_code == 200, response.text
            if predicate(response.json()):
                return response.json()
            await trio.sleep(0.05)


async def test_a_new_user_adds_a_printer_connects_it_and_reads_its_reply(
    client: httpx.AsyncClient, accounts: dict[Role, Account], marlin: PtySimulator
) -> None:
    admin, operator, viewer = accounts[Role.ADMIN], accounts[Role.OPERATOR], accounts[Role.VIEWER]
    body = {"name": "printer", "type": "printer", "connectionString": marlin.connection_string, "configuration": MARLIN}
    device = await create(client, admin, body)
    assert set(device) == {
        "id", "name", "type", "connectionString", "status", "lastSeen", "firmwareVersion",
        "configuration", "desiredState", "lastError", "createdAt", "updatedAt",
    }
    assert (device["status"], device["desiredState"], device["lastSeen"]) == ("disconnected", "disconnected", None)
    assert device["configuration"]["identifyCommand"] == "M115" and device["configuration"]["replyTerminator"] == "ok"
    assert device["createdAt"].endswith("Z")
    path = f"/api/myntrix/devices/{device['id']}"

    with trio.fail_after(TIMEOUT):
        response = await client.post(f"{path}/connect", headers=operator.headers)
    assert response.status_code == 200, response.text
    connected = response.json()
    assert (connected["status"], connected["desiredState"]) == ("connected", "connected")
    assert connected["firmwareVersion"] == "Marlin 2.1.2 (Vareon simulator)"
    assert connected["lastSeen"] is not None

    with trio.fail_after(TIMEOUT):
        response = await client.post(f"{path}/command", json={"command": "M115"}, headers=operator.headers)
    assert response.status_code == 200, response.text
    reply = response.json()
    assert set(reply) == {"command", "reply", "ok", "durationMs"}
    assert (reply["command"], reply["reply"], reply["ok"]) == ("M115", [MARLIN_FIRMWARE, "Cap:AUTOREPORT_TEMP:1", "ok"], True)

    response = await client.post(f"{path}/command", json={"command": "M115"}, headers=viewer.headers)
    assert response.status_code == 403
    response = await client.post(f"{path}/connect", headers=operator.headers)
    assert response.status_code == 409 and "already connected" in error_of(response.json())["message"]

    listed = await client.get("/api/myntrix/devices", headers=viewer.headers)
    assert listed.status_code == 200 and listed.headers["X-Total-Count"] == "1"
    assert [d["status"] for d in listed.json()] == ["connected"]
    legacy = await client.get("/api/myntrix/hardware", headers=viewer.headers)
    assert legacy.status_code == 200 and [d["id"] for d in legacy.json()] == [device["id"]]
    status = await client.get(f"/api/myntrix/hardware/{device['id']}/status", headers=viewer.headers)
    assert status.status_code == 200, status.text
    assert status.json()["connected"] is True and status.json()["firmwareVersion"] == "Marlin 2.1.2 (Vareon simulator)"
    assert set(status.json()) == {"id", "status", "connected", "lastSeen", "firmwareVersion", "desiredState", "lastError"}

    response = await client.post(f"{path}/disconnect", headers=operator.headers)
    assert response.status_code == 200 and response.json()["status"] == "disconnected"
    response = await client.post(f"{path}/command", json={"command": "M105"}, headers=operator.headers)
    assert response.status_code == 409
    error = error_of(response.json())
    assert error["code"] == "conflict"
    assert error["message"] == "device 'printer' is disconnected, not connected (connect it first)"
    assert error["details"] == {"status": "disconnected", "lastError": None}


async def test_a_silent_instrument_is_a_504_with_what_came(
    client: httpx.AsyncClient, accounts: dict[Role, Account], scpi: TcpSimulator
) -> None:
    admin, operator = accounts[Role.ADMIN], accounts[Role.OPERATOR]
    device = await create(client, admin, {"name": "meter", "connectionString": scpi.connection_string, "configuration": SCPI})
    path = f"/api/myntrix/devices/{device['id']}"
    with trio.fail_after(TIMEOUT):
        connected = (await client.post(f"{path}/connect", headers=operator.headers)).json()
        assert connected["firmwareVersion"] == SCPI_IDENTITY
        response = await client.post(f"{path}/command", json={"command": "*IDN?"}, headers=operator.headers)
        assert response.json()["reply"] == [SCPI_IDENTITY]
        response = await client.post(f"{path}/command", json={"command": "NOPE?", "timeout": 0.3}, headers=operator.headers)
    assert response.status_code == 504
    error = error_of(response.json())
    assert error["code"] == "timeout"
    assert error["details"] == {"command": "NOPE?", "timeout": 0.3, "received": []}
    assert "did not finish its reply to 'NOPE?' within 0.3s" in str(error["message"])


async def test_bad_requests_are_refused_with_the_reason(
    client: httpx.AsyncClient, accounts: dict[Role, Account]
) -> None:
    admin, operator = accounts[Role.ADMIN], accounts[Role.OPERATOR]
    response = await client.post(
        "/api/myntrix/devices", json={"name": "x", "connectionString": "foo://x"}, headers=admin.headers
    )
    assert response.status_code == 422
    error = error_of(response.json())
    assert str(error["message"]).startswith("no device driver for the scheme 'foo'; known: ")
    assert error["details"]["scheme"] == "foo"
    assert {"serial", "socket", "tcp", "mqtt", "loop"} <= set(error["details"]["known"])

    response = await client.post(
        "/api/myntrix/devices",
        json={"name": "x", "connectionString": "tcp://127.0.0.1:1", "configuration": {"lineTerminator": "|"}},
        headers=admin.headers,
    )
    assert response.status_code == 422, response.text
    response = await client.post(
        "/api/myntrix/devices", json={"name": "x", "connectionString": "tcp://127.0.0.1:1"}, headers=operator.headers
    )
    assert response.status_code == 403

    device = await create(client, admin, {"name": "spare", "connectionString": "loop://"})
    path = f"/api/myntrix/devices/{device['id']}"
    response = await client.post(f"{path}/command", json={"command": "A\nB"}, headers=operator.headers)
    assert response.status_code == 422
    response = await client.post(f"{path}/command", json={"command": ""}, headers=operator.headers)
    assert response.status_code == 422
    response = await client.post(f"{path}/disconnect", headers=operator.headers)
    assert response.status_code == 409 and "already disconnected" in error_of(response.json())["message"]
    response = await client.delete(f"{path}/upload", headers=operator.headers)
    assert response.status_code == 409 and "no upload is running" in error_of(response.json())["message"]
    for missing in ("/api/myntrix/devices/not-a-uuid", "/api/myntrix/devices/00000000-0000-0000-0000-000000000000"):
        response = await client.get(missing, headers=operator.headers)
        assert response.status_code == 404
        assert error_of(response.json())["code"] == "not_found"
    response = await client.get("/api/myntrix/devices?status=sleeping", headers=operator.headers)
    assert response.status_code == 422


async def test_a_password_in_a_connection_string_never_goes_out(
    front: Front, client: httpx.AsyncClient, accounts: dict[Role, Account]
) -> None:
    admin, viewer = accounts[Role.ADMIN], accounts[Role.VIEWER]
    raw = "mqtt://sensor:s3cr3t-pass@127.0.0.1:1883/lab/bench?qos=1"
    device = await create(client, admin, {"name": "sensor", "connectionString": raw})
    masked = "mqtt://sensor:***@127.0.0.1:1883/lab/bench?qos=1"
    assert device["connectionString"] == masked
    path = f"/api/myntrix/devices/{device['id']}"
    for url in (path, "/api/myntrix/devices", "/api/myntrix/hardware", f"/api/myntrix/hardware/{device['id']}/status"):
        response = await client.get(url, headers=viewer.headers)
        assert response.status_code == 200 and "s3cr3t" not in response.text, url

    # Sending the masked form back (a dashboard saving the whole object) keeps the password.
    response = await client.put(path, json={**device, "name": "bench sensor"}, headers=admin.headers)
    assert response.status_code == 422  # read-only fields are not taken
    response = await client.put(path, json={"name": "bench sensor", "connectionString": masked}, headers=admin.headers)
    assert response.status_code == 200, response.text
    assert response.json()["name"] == "bench sensor" and "s3cr3t" not in response.text

    def stored(session: Session) -> str | None:
        return session.scalar(select(DeviceRecord.connection_string).where(DeviceRecord.id == device["id"]))

    assert await front.ctx.store.read(stored) == raw


async def test_change_and_delete_a_device(
    client: httpx.AsyncClient, accounts: dict[Role, Account], marlin: PtySimulator, scpi: TcpSimulator
) -> None:
    admin, operator, viewer = accounts[Role.ADMIN], accounts[Role.OPERATOR], accounts[Role.VIEWER]
    device = await create(client, admin, {"name": "bench", "connectionString": scpi.connection_string, "configuration": SCPI})
    path = f"/api/myntrix/devices/{device['id']}"
    with trio.fail_after(TIMEOUT):
        response = await client.post(f"{path}/connect", headers=operator.headers)
        assert response.json()["firmwareVersion"] == SCPI_IDENTITY
        # Pointed at another device: the link is reopened there, still connected as wanted.
        response = await client.put(
            path,
            json={"name": "printer", "connectionString": marlin.connection_string, "configuration": MARLIN},
            headers=admin.headers,
        )
        assert response.status_code == 200, response.text
        assert response.json()["name"] == "printer"
        await until(client, path, viewer, lambda d: d["status"] == "connected" and d["firmwareVersion"].startswith("Marlin"))
        response = await client.post(f"{path}/command", json={"command": "M105"}, headers=operator.headers)
        assert response.json()["reply"] == ["ok T:21.3 /0.0 B:20.1 /0.0"]
    response = await client.put(path, json={"connectionString": "foo://x"}, headers=admin.headers)
    assert response.status_code == 422
    response = await client.put(path, json={"name": "x"}, headers=operator.headers)
    assert response.status_code == 403
    response = await client.delete(path, headers=operator.headers)
    assert response.status_code == 403

    assert len(descriptors_of(marlin)) == 2  # the simulator's own, and the runtime's link

    response = await client.delete(path, headers=admin.headers)
    assert response.status_code == 204
    assert (await client.get(path, headers=viewer.headers)).status_code == 404
    listed = await client.get("/api/myntrix/devices", headers=viewer.headers)
    assert listed.json() == [] and listed.headers["X-Total-Count"] == "0"
    assert len(descriptors_of(marlin)) == 1  # the link was closed


def descriptors_of(simulator: PtySimulator) -> list[str]:
    """This process's open descriptors on the simulator's pty."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}") == simulator.slave_path:
                found.append(fd)
        except OSError:
            continue  # closed meanwhile (the listing's own descriptor)
    return found


async def test_a_runtime_restart_brings_a_connected_device_back_connected(
    nursery: trio.Nursery, tmp_path: Path, marlin: PtySimulator, front_environ: dict[str, str]
) -> None:
    data = tmp_path / "restarted"
    components = DEVICES
    first = await start_front(nursery, data, front_environ, components=components)
    devices = first.ctx.registry.face(Devices)
    device = await devices.create({"name": "printer", "connectionString": marlin.connection_string, "configuration": MARLIN})
    spare = await devices.create({"name": "spare", "connectionString": "loop://"})
    with trio.fail_after(TIMEOUT):
        assert (await devices.connect(device.id)).status is DeviceStatus.CONNECTED
    await first.stop()

    second = await start_front(nursery, data, front_environ, components=components)
    try:
        devices = second.ctx.registry.face(Devices)
        with trio.fail_after(TIMEOUT):
            while (await devices.get(device.id)).status is not DeviceStatus.CONNECTED:
                await trio.sleep(0.05)
            assert (await devices.command(device.id, "M105")).ok
        assert (await devices.get(spare.id)).status is DeviceStatus.DISCONNECTED
    finally:
        await second.stop()
