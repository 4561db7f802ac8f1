"""``api`` tasks and what only the host can reach (issue 22, point 2; decision 0024), over HTTP
on a live runtime: an operator cannot aim a task at loopback, link-local or private addresses
unless ``[outbound] allow`` lists them, an admin can, a run goes with its creator's current role,
and what the destination answered is shown only to the task's creator and admins."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from web_support import PASSWORD, SCHEDULER, START_TIMEOUT, Account, Front, error_of, start_front

from vareon_runtime.auth import Role
from vareon_runtime.component import Component
from web.tasks import HIDDEN_LOGS

TIMEOUT = 20.0
TASKS = "/api/myntrix/tasks"
SECRET = "loopback-only s3cr3t-42"


@pytest.fixture
def front_components() -> tuple[Component, ...]:
    return SCHEDULER


@dataclass
class Secret:
    """A service on the loopback only, answering every request with :data:`SECRET`."""

    port: int = 0
    requests: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/secret"

    async def handle(self, stream: trio.SocketStream) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = await stream.receive_some(65536)
            if not chunk:
                return
            data += chunk
        self.requests.append(data.split(b"\r\n", 1)[0].decode("latin-1"))
        body = SECRET.encode()
        await stream.send_all(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
            % (len(body), body)
        )
        await stream.aclose()


@pytest.fixture
async def secret(nursery: trio.Nursery) -> AsyncIterator[Secret]:
    service = Secret()
    listeners = await nursery.start(partial(trio.serve_tcp, service.handle, 0, host="127.0.0.1"))
    service.port = listeners[0].socket.getsockname()[1]
    yield service


def api_task(url: str, **fields: Any) -> dict[str, Any]:
    return {"name": "fetch", "schedule": "@yearly", "action": "api", "parameters": {"url": url}, **fields}


async def create(client: httpx.AsyncClient, account: Account, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post(TASKS, json=body, headers=account.headers)
    assert response.status_code == 201, response.text
    task: dict[str, Any] = response.json()
    return task


async def run_to_end(client: httpx.AsyncClient, account: Account, task_id: str) -> dict[str, Any]:
    """Run the task now and answer the run once it has ended, as ``account`` reads it."""
    response = await client.post(f"{TASKS}/{task_id}/run", headers=account.headers)
    assert response.status_code == 202, response.text
    return await read_run(client, account, response.json()["id"])


async def read_run(client: httpx.AsyncClient, account: Account, run_id: str) -> dict[str, Any]:
    with trio.fail_after(TIMEOUT):
        while True:
            response = await client.get(f"{TASKS}/history", params={"limit": 500}, headers=account.headers)
            assert response.status_code == 200, response.text
            for run in response.json():
                if run["id"] == run_id and run["status"] != "running":
                    return run  # type: ignore[no-any-return]
            await trio.sleep(0.05)


async def test_an_operator_cannot_aim_a_task_at_what_only_the_host_reaches(
    client: httpx.AsyncClient, accounts: dict[Role, Account], secret: Secret
) -> None:
    operator = accounts[Role.OPERATOR]
    response = await client.post(TASKS, json=api_task(secret.url), headers=operator.headers)
    assert response.status_code == 422, response.text
    error = error_of(response.json())
    assert error["message"] == (
        "parameters.url: 127.0.0.1 is a loopback address (this host); only an admin may aim an outbound"
        " call there: ask an admin to set it up, or to add 127.0.0.1 to [outbound] allow in config.toml"
    )
    assert error["details"] == {
        "field": "parameters.url", "host": "127.0.0.1", "address": "127.0.0.1", "reason": "a loopback address (this host)",
    }  # fmt: skip
    for url in (
        "http://[::1]:8080/",
        "http://0.0.0.0:8080/",
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "http://[::ffff:127.0.0.1]/",
        "http://[::ffff:a9fe:a9fe]/",
        "http://10.0.0.1/",
        "http://192.168.1.1/admin",
        "http://2130706433/",
        "http://localhost/",
    ):
        response = await client.post(TASKS, json=api_task(url), headers=operator.headers)
        assert response.status_code == 422, (url, response.text)
        assert "[outbound] allow" in str(error_of(response.json())["message"]), url
    # Nor can an operator turn a public task inward.
    task = await create(client, operator, api_task("http://8.8.8.8/"))
    response = await client.put(f"{TASKS}/{task['id']}", json={"parameters": {"url": secret.url}}, headers=operator.headers)
    assert response.status_code == 422, response.text
    assert "127.0.0.1 is a loopback address" in str(error_of(response.json())["message"])
    assert secret.requests == []
    assert [t["id"] for t in (await client.get(TASKS, headers=operator.headers)).json()] == [task["id"]]


async def test_an_admins_task_reaches_loopback_and_only_its_creator_and_admins_read_the_answer(
    client: httpx.AsyncClient, accounts: dict[Role, Account], secret: Secret
) -> None:
    admin, operator, viewer = accounts[Role.ADMIN], accounts[Role.OPERATOR], accounts[Role.VIEWER]
    task = await create(client, admin, api_task(secret.url))
    done = await run_to_end(client, operator, task["id"])
    assert done["status"] == "success" and done["httpStatus"] == 200
    assert done["logs"] == HIDDEN_LOGS
    assert secret.requests == ["GET /secret HTTP/1.1"]
    for reader in (viewer, operator):
        response = await client.get(f"{TASKS}/history", params={"taskId": task["id"]}, headers=reader.headers)
        assert SECRET not in response.text
        [run] = response.json()
        assert (run["id"], run["status"], run["httpStatus"], run["logs"]) == (done["id"], "success", 200, HIDDEN_LOGS)
    shown = (await client.get(f"{TASKS}/history", params={"taskId": task["id"]}, headers=admin.headers)).json()
    assert SECRET in shown[0]["logs"]
    # An operator may rename the admin's task, sending its parameters back as shown...
    response = await client.put(
        f"{TASKS}/{task['id']}", json={"name": "renamed", "parameters": task["parameters"]}, headers=operator.headers
    )
    assert response.status_code == 200, response.text
    # ...but not change where it goes or what it sends there.
    changed = {**task["parameters"], "method": "POST", "body": "reboot"}
    response = await client.put(f"{TASKS}/{task['id']}", json={"parameters": changed}, headers=operator.headers)
    assert response.status_code == 422, response.text


async def test_a_run_goes_with_its_creators_current_role(
    client: httpx.AsyncClient, front: Front, accounts: dict[Role, Account], secret: Secret
) -> None:
    admin, operator = accounts[Role.ADMIN], accounts[Role.OPERATOR]
    task = await create(client, admin, api_task(secret.url))
    await front.ctx.auth.create_user("other-admin", "other-admin@example.com", PASSWORD, Role.ADMIN)  # not the last one
    user = await front.ctx.auth.get_user_by_username(admin.username)
    await front.ctx.auth.update_user(user.id, role=Role.OPERATOR)
    done = await run_to_end(client, operator, task["id"])
    assert done["status"] == "failed"
    assert done["error"] == (
        f"GET {secret.url} refused: 127.0.0.1 is a loopback address (this host); only an admin may aim an"
        " outbound call there: ask an admin to set it up, or to add 127.0.0.1 to [outbound] allow in config.toml"
    )
    assert secret.requests == []


async def test_an_allow_listed_address_is_an_operators_and_so_is_its_answer(
    nursery: trio.Nursery, tmp_path: Path, secret: Secret
) -> None:
    front = await start_front(nursery, tmp_path / "data", {"VAREON_OUTBOUND_ALLOW": "127.0.0.1"}, components=SCHEDULER)
    try:
        accounts: dict[Role, Account] = {}
        with trio.fail_after(START_TIMEOUT):
            for role in Role:
                name = f"{role.value}-user"
                await front.ctx.auth.create_user(name, f"{name}@example.com", PASSWORD, role)
                accounts[role] = Account(name, role, (await front.ctx.auth.login(name, PASSWORD, None)).access_token)
        admin, operator, viewer = accounts[Role.ADMIN], accounts[Role.OPERATOR], accounts[Role.VIEWER]
        async with httpx.AsyncClient(base_url=front.base_url, timeout=10.0) as client:
            task = await create(client, operator, api_task(secret.url))
            done = await run_to_end(client, operator, task["id"])
            assert done["status"] == "success" and SECRET in done["logs"]
            for reader, sees in ((viewer, False), (admin, True)):
                [run] = (await client.get(f"{TASKS}/history", params={"taskId": task["id"]}, headers=reader.headers)).json()
                assert (SECRET in run["logs"]) is sees, reader.role
            # The list allows 127.0.0.1, not the rest of the host's addresses.
            response = await client.post(TASKS, json=api_task("http://127.0.0.2/"), headers=operator.headers)
            assert response.status_code == 422, response.text
    finally:
        await front.stop()
