"""/api/myntrix/agents over HTTP, on a live runtime running the Myntrix module: real processes."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import trio
from web_support import AGENTS, Account, PASSWORD, error_of, start_front

from vareon_runtime.auth import Role
from vareon_runtime.component import Component

TIMEOUT = 20.0

SCRIPT = """\
import sys, time
print("hello from", sys.argv[1], flush=True)
for i in range(3):
    print(f"line {i}", flush=True)
while True:
    time.sleep(1)
"""


@pytest.fixture
def front_components() -> tuple[Component, ...]:
    return AGENTS


@pytest.fixture
def script(tmp_path: Path) -> Path:
    path = tmp_path / "agent.py"
    path.write_text(SCRIPT)
    return path


def _body(script: Path, name: str = "printer", **config: Any) -> dict[str, Any]:
    return {
        "name": name,
        "configuration": {"command": [sys.executable, str(script), name], "stopTimeout": 2.0, **config},
    }


async def _create(client: httpx.AsyncClient, admin: Account, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post("/api/myntrix/agents", json=body, headers=admin.headers)
    assert response.status_code == 201, response.text
    agent: dict[str, Any] = response.json()
    return agent


async def _until(
    client: httpx.AsyncClient, path: str, account: Account, predicate: Callable[[Any], bool]
) -> Any:
    """The first body of ``GET path`` that satisfies ``predicate``."""
    with trio.fail_after(TIMEOUT):
        while True:
            response = await client.get(path, headers=account.headers)
            assert response.status_code == 200, response.text
            if predicate(response.json()):
                return response.json()
            await trio.sleep(0.05)


async def test_a_new_user_runs_an_agent_kills_it_and_stops_it(
    client: httpx.AsyncClient, accounts: dict[Role, Account], script: Path
) -> None:
    admin, operator, viewer = accounts[Role.ADMIN], accounts[Role.OPERATOR], accounts[Role.VIEWER]
    agent = await _create(client, admin, _body(script))
    assert agent["status"] == "stopped" and agent["desiredState"] == "stopped"
    assert agent["lastRun"] is None and agent["pid"] is None
    assert agent["configuration"]["stopTimeout"] == 2.0
    assert agent["createdAt"].endswith("Z")
    path = f"/api/myntrix/agents/{agent['id']}"

    response = await client.post(f"{path}/start", headers=operator.headers)
    assert response.status_code == 200, response.text
    started = response.json()
    assert started["status"] == "running" and started["desiredState"] == "running"
    first_pid = started["pid"]
    assert psutil.pid_exists(first_pid) and started["lastRun"].endswith("Z")

    lines = await _until(
        client, f"{path}/logs?tail=10", viewer, lambda body: any(l["line"] == "line 2" for l in body)
    )
    output = [l["line"] for l in lines if l["stream"] == "stdout"]
    assert output == ["hello from printer", "line 0", "line 1", "line 2"]
    assert all(l["time"].endswith("Z") for l in lines)

    os.kill(first_pid, signal.SIGKILL)
    back = await _until(
        client, path, viewer, lambda body: body["status"] == "running" and body["pid"] not in (None, first_pid)
    )
    assert back["restarts"] == 1 and psutil.pid_exists(back["pid"])

    response = await client.post(f"{path}/stop", headers=operator.headers)
    assert response.status_code == 200, response.text
    stopped = response.json()
    assert stopped["status"] == "stopped" and stopped["pid"] is None and stopped["desiredState"] == "stopped"
    assert not psutil.pid_exists(back["pid"])
    assert not psutil.pid_exists(first_pid)
    response = await client.get(path, headers=viewer.headers)
    assert response.json()["status"] == "stopped"


async def test_a_second_start_or_stop_is_a_conflict(
    client: httpx.AsyncClient, accounts: dict[Role, Account], script: Path
) -> None:
    admin, operator = accounts[Role.ADMIN], accounts[Role.OPERATOR]
    path = f"/api/myntrix/agents/{(await _create(client, admin, _body(script)))['id']}"
    response = await client.post(f"{path}/stop", headers=operator.headers)
    assert response.status_code == 409
    assert error_of(response.json())["code"] == "conflict"
    assert (await client.post(f"{path}/start", headers=operator.headers)).status_code == 200
    response = await client.post(f"{path}/start", headers=operator.headers)
    assert response.status_code == 409
    assert "running" in str(error_of(response.json())["message"])
    response = await client.post(f"{path}/restart", headers=operator.headers)
    assert response.status_code == 200 and response.json()["status"] == "running"
    assert (await client.post(f"{path}/stop", headers=operator.headers)).status_code == 200


async def test_a_command_that_cannot_run_is_refused_with_the_reason(
    client: httpx.AsyncClient, accounts: dict[Role, Account], tmp_path: Path
) -> None:
    admin = accounts[Role.ADMIN]
    missing = str(tmp_path / "no-such-program")
    response = await client.post(
        "/api/myntrix/agents", json={"name": "ghost", "configuration": {"command": [missing]}}, headers=admin.headers
    )
    assert response.status_code == 422
    error = error_of(response.json())
    assert error["code"] == "invalid"
    assert error["details"]["field"] == "configuration.argv"  # type: ignore[index]
    assert missing in str(error["details"]["reason"])  # type: ignore[index]
    response = await client.post(
        "/api/myntrix/agents",
        json={"name": "nowhere", "configuration": {"command": [sys.executable], "cwd": missing}},
        headers=admin.headers,
    )
    assert response.status_code == 422
    assert error_of(response.json())["details"]["field"] == "configuration.cwd"  # type: ignore[index]
    listed = await client.get("/api/myntrix/agents", headers=admin.headers)
    assert listed.json() == [] and listed.headers["X-Total-Count"] == "0"


async def test_roles_viewers_read_operators_run_admins_change(
    client: httpx.AsyncClient, accounts: dict[Role, Account], script: Path
) -> None:
    admin, operator, viewer = accounts[Role.ADMIN], accounts[Role.OPERATOR], accounts[Role.VIEWER]
    response = await client.post("/api/myntrix/agents", json=_body(script), headers=operator.headers)
    assert response.status_code == 403
    agent = await _create(client, admin, _body(script))
    path = f"/api/myntrix/agents/{agent['id']}"
    assert (await client.post(f"{path}/start", headers=viewer.headers)).status_code == 403
    assert (await client.put(path, json={"name": "x"}, headers=operator.headers)).status_code == 403
    assert (await client.delete(path, headers=operator.headers)).status_code == 403
    assert (await client.get(path, headers=viewer.headers)).json()["status"] == "stopped"


async def test_list_filters_pages_and_counts(
    client: httpx.AsyncClient, accounts: dict[Role, Account], script: Path
) -> None:
    admin, operator, viewer = accounts[Role.ADMIN], accounts[Role.OPERATOR], accounts[Role.VIEWER]
    made = [await _create(client, admin, _body(script, name=f"a{i}")) for i in range(3)]
    assert (await client.post(f"/api/myntrix/agents/{made[1]['id']}/start", headers=operator.headers)).status_code == 200

    response = await client.get("/api/myntrix/agents?limit=2", headers=viewer.headers)
    assert [a["name"] for a in response.json()] == ["a0", "a1"]
    assert response.headers["X-Total-Count"] == "3"
    response = await client.get("/api/myntrix/agents?limit=2&offset=2", headers=viewer.headers)
    assert [a["name"] for a in response.json()] == ["a2"]
    response = await client.get("/api/myntrix/agents?status=running", headers=viewer.headers)
    assert [a["name"] for a in response.json()] == ["a1"] and response.headers["X-Total-Count"] == "1"
    response = await client.get("/api/myntrix/agents?status=stopped", headers=viewer.headers)
    assert response.headers["X-Total-Count"] == "2"
    for bad in ("limit=501", "limit=0", "offset=-1", "status=sleeping"):
        response = await client.get(f"/api/myntrix/agents?{bad}", headers=viewer.headers)
        assert response.status_code == 422, bad
    assert (await client.post(f"/api/myntrix/agents/{made[1]['id']}/stop", headers=operator.headers)).status_code == 200


async def test_update_delete_and_unknown_ids(
    client: httpx.AsyncClient, accounts: dict[Role, Account], script: Path
) -> None:
    admin, viewer = accounts[Role.ADMIN], accounts[Role.VIEWER]
    agent = await _create(client, admin, _body(script))
    path = f"/api/myntrix/agents/{agent['id']}"
    response = await client.put(path, json={"name": "renamed", "type": "printer"}, headers=admin.headers)
    assert response.status_code == 200, response.text
    assert (response.json()["name"], response.json()["type"]) == ("renamed", "printer")
    response = await client.put(path, json={"configuration": {"command": "python3 x.py"}}, headers=admin.headers)
    assert response.status_code == 422
    response = await client.delete(path, headers=admin.headers)
    assert response.status_code == 204
    for method, suffix in (("GET", ""), ("POST", "/start"), ("GET", "/logs"), ("DELETE", "")):
        account = admin if method == "DELETE" else viewer if method == "GET" else accounts[Role.OPERATOR]
        response = await client.request(method, f"{path}{suffix}", headers=account.headers)
        assert response.status_code == 404, (method, suffix)
        assert error_of(response.json())["code"] == "not_found"
    response = await client.get("/api/myntrix/agents/not-a-uuid", headers=viewer.headers)
    assert response.status_code == 404


async def test_without_the_module_the_routes_say_unavailable(nursery: trio.Nursery, tmp_path: Path) -> None:
    front = await start_front(nursery, tmp_path / "bare")
    try:
        await front.ctx.auth.create_user("viewer-x", "viewer-x@example.com", PASSWORD, Role.VIEWER)
        token = (await front.ctx.auth.login("viewer-x", PASSWORD, None)).access_token
        response = await front.app.test_client().get(
            "/api/myntrix/agents", headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status_code == 503
        error = error_of(await response.get_json())
        assert error["code"] == "unavailable" and "Myntrix module is not running" in str(error["message"])
    finally:
        await front.stop()
