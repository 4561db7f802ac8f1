"""/api/myntrix/tasks over HTTP, on a live runtime running the Myntrix module and the scheduler:
the new user's flow of issue 6, who may do what, refusals, and secrets kept masked."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Callable
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from web_support import AGENTS, Account, SCHEDULER, error_of, start_front

from actors.myntrix.scheduler.actions import MASK
from vareon_runtime.auth import Role
from vareon_runtime.component import Component

TIMEOUT = 20.0
TASKS = "/api/myntrix/tasks"


@pytest.fixture
def front_components() -> tuple[Component, ...]:
    return SCHEDULER


@pytest.fixture
def front_environ() -> dict[str, str]:
    # The local endpoints here are loopback, which operators reach only when listed (decision 0024).
    return {"VAREON_OUTBOUND_ALLOW": "127.0.0.1"}


def script_task(argv: list[str], **fields: Any) -> dict[str, Any]:
    return {"name": "printer", "schedule": "*/1 * * * *", "action": "script", "parameters": {"argv": argv}, **fields}


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


async def create(client: httpx.AsyncClient, account: Account, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post(TASKS, json=body, headers=account.headers)
    assert response.status_code == 201, response.text
    task: dict[str, Any] = response.json()
    return task


async def finished_run(client: httpx.AsyncClient, account: Account, run_id: str) -> dict[str, Any]:
    """The run once it has ended, read from the history."""
    with trio.fail_after(TIMEOUT):
        while True:
            response = await client.get(f"{TASKS}/history", params={"limit": 500}, headers=account.headers)
            assert response.status_code == 200, response.text
            for run in response.json():
                if run["id"] == run_id and run["status"] != "running":
                    return run  # type: ignore[no-any-return]
            await trio.sleep(0.05)


async def refused(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    return error_of(response.json())


async def test_a_new_user_schedules_a_script_runs_it_reads_its_output_and_disables_it(
    client: httpx.AsyncClient, accounts: dict[Role, Account]
) -> None:
    admin, operator, viewer = accounts[Role.ADMIN], accounts[Role.OPERATOR], accounts[Role.VIEWER]
    task = await create(
        client, admin, script_task(python("import sys; print('backup done'); print('1 warning', file=sys.stderr)"))
    )
    assert task["schedule"] == "*/1 * * * *" and task["action"] == "script" and task["enabled"] is True
    assert task["createdBy"] == admin.username
    assert len(task["nextRuns"]) == 5 and task["nextRun"] == task["nextRuns"][0]
    assert task["lastRun"] is None and task["lastStatus"] is None

    response = await client.post(f"{TASKS}/{task['id']}/run", headers=operator.headers)
    assert response.status_code == 202, response.text
    run = response.json()
    assert run["taskId"] == task["id"] and run["trigger"] == "manual" and run["scheduledFor"] is None
    assert run["status"] in ("running", "success")

    done = await finished_run(client, viewer, run["id"])
    assert done["status"] == "success" and done["exitCode"] == 0 and done["error"] is None
    assert "backup done" in done["logs"] and "stderr: 1 warning" in done["logs"]
    assert done["endTime"] is not None and done["endTime"] >= done["startTime"]

    listed = (await client.get(TASKS, headers=viewer.headers)).json()
    assert [item["id"] for item in listed] == [task["id"]]
    assert listed[0]["lastStatus"] == "success"

    response = await client.put(f"{TASKS}/{task['id']}", json={"enabled": False}, headers=admin.headers)
    assert response.status_code == 200, response.text
    disabled = response.json()
    assert disabled["enabled"] is False and disabled["nextRuns"] == [] and disabled["nextRun"] is None
    assert (await client.get(TASKS, params={"enabled": "true"}, headers=viewer.headers)).json() == []
    assert [t["id"] for t in (await client.get(TASKS, params={"enabled": "false"}, headers=viewer.headers)).json()] == [task["id"]]

    error = await refused(await client.post(TASKS, json=script_task(["true"], schedule="0 0 30 2 *"), headers=admin.headers), 422)
    assert "never fires" in str(error["message"]) and "February" in str(error["message"])
    error = await refused(await client.post(TASKS, json=script_task(["true"], schedule="61 * * * *"), headers=admin.headers), 422)
    assert "61" in str(error["message"])


async def test_create_get_update_and_delete_answer_the_task(
    client: httpx.AsyncClient, accounts: dict[Role, Account]
) -> None:
    admin, viewer = accounts[Role.ADMIN], accounts[Role.VIEWER]
    task = await create(client, admin, script_task(["true"], timezone="Europe/Berlin", timeout=30, overlap="allow"))
    assert (task["timezone"], task["timeout"], task["overlap"], task["misfirePolicy"]) == ("Europe/Berlin", 30.0, "allow", "run_once")
    assert task["nextRuns"][0].endswith(("+01:00", "+02:00"))  # in the task's zone
    response = await client.get(f"{TASKS}/{task['id']}", headers=viewer.headers)
    assert response.status_code == 200 and response.json()["id"] == task["id"]

    response = await client.put(
        f"{TASKS}/{task['id']}", json={"name": "renamed", "schedule": "@daily"}, headers=admin.headers
    )
    assert response.status_code == 200, response.text
    changed = response.json()
    assert (changed["name"], changed["schedule"], changed["timezone"]) == ("renamed", "@daily", "Europe/Berlin")
    assert changed["nextRuns"] != task["nextRuns"]

    assert (await client.delete(f"{TASKS}/{task['id']}", headers=admin.headers)).status_code == 204
    await refused(await client.get(f"{TASKS}/{task['id']}", headers=viewer.headers), 404)
    await refused(await client.delete(f"{TASKS}/{task['id']}", headers=admin.headers), 404)


async def test_only_admins_define_or_delete_what_executes_on_the_host(
    client: httpx.AsyncClient, accounts: dict[Role, Account]
) -> None:
    admin, operator, viewer = accounts[Role.ADMIN], accounts[Role.OPERATOR], accounts[Role.VIEWER]
    error = await refused(await client.post(TASKS, json=script_task(["true"]), headers=operator.headers), 403)
    assert "script" in str(error["message"])
    await refused(await client.post(TASKS, json=script_task(["true"]), headers=viewer.headers), 403)

    api = {"name": "ping", "schedule": "@hourly", "action": "api", "parameters": {"url": "http://127.0.0.1:9/"}}
    mine = await create(client, operator, api)
    assert mine["createdBy"] == operator.username
    response = await client.put(f"{TASKS}/{mine['id']}", json={"name": "ping2"}, headers=operator.headers)
    assert response.status_code == 200, response.text
    # An operator may not turn an api task into a script task either.
    await refused(
        await client.put(
            f"{TASKS}/{mine['id']}", json={"action": "script", "parameters": {"argv": ["true"]}}, headers=operator.headers
        ),
        403,
    )

    script = await create(client, admin, script_task(["true"]))
    await refused(await client.put(f"{TASKS}/{script['id']}", json={"name": "x"}, headers=operator.headers), 403)
    error = await refused(await client.delete(f"{TASKS}/{script['id']}", headers=operator.headers), 403)
    assert "only an admin may delete a script task" in str(error["message"])
    await refused(await client.delete(f"{TASKS}/{mine['id']}", headers=viewer.headers), 403)
    assert (await client.delete(f"{TASKS}/{mine['id']}", headers=operator.headers)).status_code == 204
    assert (await client.delete(f"{TASKS}/{script['id']}", headers=admin.headers)).status_code == 204


@pytest.mark.parametrize(
    ("body", "status", "text"),
    [
        (script_task(["true"], action="shell"), 422, "no task action has the kind 'shell'; known: agent, api, script"),
        (script_task(["no-such-program-x1"]), 422, "executable 'no-such-program-x1' was not found on PATH"),
        (script_task(["true"], parameters={"argv": "ls -l"}), 422, "not the shell command line 'ls -l'"),
        (script_task(["true"], timezone="Mars/Olympus"), 422, "'Mars/Olympus' is not an IANA time zone"),
        (script_task(["true"], schedule="every minute"), 422, "every minute"),
        ({"name": "x", "schedule": "@daily", "action": "api", "parameters": {"url": "ftp://example.com"}}, 422, "http:// or https://"),
        ({"name": "x", "schedule": "@daily", "action": "agent", "parameters": {"agentId": "nope", "operation": "start"}}, 422, "a UUID"),
        ({"name": "x", "schedule": "@daily"}, 422, "body.action: Field required"),
        (script_task(["true"], surprise=1), 422, "body.surprise: Extra inputs are not permitted"),
    ],
)
async def test_bad_tasks_are_refused_saying_why(
    client: httpx.AsyncClient, accounts: dict[Role, Account], body: dict[str, Any], status: int, text: str
) -> None:
    error = await refused(await client.post(TASKS, json=body, headers=accounts[Role.ADMIN].headers), status)
    assert text in str(error["message"])
    assert (await client.get(TASKS, headers=accounts[Role.ADMIN].headers)).json() == []


async def test_unknown_ids_are_404(client: httpx.AsyncClient, accounts: dict[Role, Account]) -> None:
    admin = accounts[Role.ADMIN]
    for task_id in ("0b0e3b4c-9a63-4a3e-9a55-2a7e0c4b0d11", "not-a-uuid"):
        await refused(await client.get(f"{TASKS}/{task_id}", headers=admin.headers), 404)
        await refused(await client.post(f"{TASKS}/{task_id}/run", headers=admin.headers), 404)
        await refused(await client.put(f"{TASKS}/{task_id}", json={"name": "x"}, headers=admin.headers), 404)
        await refused(await client.delete(f"{TASKS}/{task_id}", headers=admin.headers), 404)


async def test_history_is_not_read_as_a_task_id(client: httpx.AsyncClient, accounts: dict[Role, Account]) -> None:
    response = await client.get(f"{TASKS}/history", headers=accounts[Role.VIEWER].headers)
    assert response.status_code == 200 and response.json() == []
    assert response.headers["X-Total-Count"] == "0"


async def test_run_now_while_a_run_is_going_is_409_unless_overlap_is_allowed(
    client: httpx.AsyncClient, accounts: dict[Role, Account], tmp_path: Path
) -> None:
    admin, operator = accounts[Role.ADMIN], accounts[Role.OPERATOR]
    release = tmp_path / "release"
    wait = python(
        "import os, sys, time\n"
        f"while not os.path.exists({str(release)!r}): time.sleep(0.02)\n"
        "print('released')"
    )
    task = await create(client, admin, script_task(wait, timeout=60))
    first = (await client.post(f"{TASKS}/{task['id']}/run", headers=operator.headers)).json()
    error = await refused(await client.post(f"{TASKS}/{task['id']}/run", headers=operator.headers), 409)
    assert "running" in str(error["message"])

    allowing = await create(client, admin, script_task(wait, overlap="allow", timeout=60))
    runs = []
    for _ in range(2):
        response = await client.post(f"{TASKS}/{allowing['id']}/run", headers=operator.headers)
        assert response.status_code == 202, response.text
        runs.append(response.json())
    release.write_text("")
    for run in (first, *runs):
        done = await finished_run(client, admin, run["id"])
        assert done["status"] == "success" and "released" in done["logs"]


async def test_a_run_past_its_timeout_is_stopped_and_says_so(
    client: httpx.AsyncClient, accounts: dict[Role, Account]
) -> None:
    admin = accounts[Role.ADMIN]
    task = await create(
        client, admin, script_task(python("import time; print('sleeping', flush=True); time.sleep(600)"), timeout=0.5)
    )
    run = (await client.post(f"{TASKS}/{task['id']}/run", headers=admin.headers)).json()
    done = await finished_run(client, admin, run["id"])
    assert done["status"] == "timeout"
    assert "sleeping" in done["logs"]
    assert done["exitCode"] is None or done["exitCode"] < 0


@pytest.fixture
async def hook(nursery: trio.Nursery) -> AsyncIterator[tuple[str, list[dict[str, str]]]]:
    """A local HTTP endpoint that records each request's headers and answers 204."""
    seen: list[dict[str, str]] = []

    async def handle(stream: trio.SocketStream) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = await stream.receive_some(65536)
            if not chunk:
                return
            data += chunk
        lines = data.partition(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")[1:]
        seen.append({name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)})
        await stream.send_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
        await stream.aclose()

    listeners = await nursery.start(partial(trio.serve_tcp, handle, 0, host="127.0.0.1"))
    yield f"http://127.0.0.1:{listeners[0].socket.getsockname()[1]}/hook", seen


async def test_secrets_go_out_masked_and_survive_a_task_sent_back(
    client: httpx.AsyncClient, accounts: dict[Role, Account], hook: tuple[str, list[dict[str, str]]]
) -> None:
    operator = accounts[Role.OPERATOR]
    url, seen = hook
    body = {
        "name": "hook",
        "schedule": "@daily",
        "action": "api",
        "parameters": {"url": url, "method": "POST", "headers": {"Authorization": "Bearer s3cret-t0ken"}, "expectedStatus": 204},
    }
    task = await create(client, operator, body)
    assert task["parameters"]["headers"] == {"Authorization": MASK}
    shown = (await client.get(f"{TASKS}/{task['id']}", headers=operator.headers)).json()
    assert "s3cret-t0ken" not in str(shown)
    listed = (await client.get(TASKS, headers=operator.headers)).text
    assert "s3cret-t0ken" not in listed
    # The dashboard sends the task back as it was shown, renamed: the token stays what it was.
    response = await client.put(
        f"{TASKS}/{task['id']}", json={"name": "hook2", "parameters": shown["parameters"]}, headers=operator.headers
    )
    assert response.status_code == 200, response.text
    run = (await client.post(f"{TASKS}/{task['id']}/run", headers=operator.headers)).json()
    done = await finished_run(client, operator, run["id"])
    assert done["status"] == "success" and done["httpStatus"] == 204
    assert seen[-1]["authorization"] == "Bearer s3cret-t0ken"
    assert "s3cret-t0ken" not in done["logs"]


async def test_without_the_scheduler_the_routes_are_503(nursery: trio.Nursery, tmp_path: Path) -> None:
    front = await start_front(nursery, tmp_path / "bare", components=AGENTS)
    try:
        await front.ctx.auth.create_user("root", "root@example.com", "correct horse battery staple", Role.ADMIN)
        pair = await front.ctx.auth.login("root", "correct horse battery staple", None)
        headers = {"Authorization": f"Bearer {pair.access_token}"}
        async with httpx.AsyncClient(base_url=front.base_url, timeout=10.0) as http:
            calls: list[Callable[[], Any]] = [
                partial(http.get, TASKS, headers=headers),
                partial(http.get, f"{TASKS}/history", headers=headers),
                partial(http.post, TASKS, json=script_task(["true"]), headers=headers),
                partial(http.post, f"{TASKS}/0b0e3b4c-9a63-4a3e-9a55-2a7e0c4b0d11/run", headers=headers),
            ]
            for call in calls:
                error = await refused(await call(), 503)
                assert error["code"] == "unavailable" and "scheduler is not running" in str(error["message"])
    finally:
        await front.stop()
