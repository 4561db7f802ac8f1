"""``POST /api/myntrix/tasks/bulk`` over HTTP on a live runtime (issue 23, point 13; decision
0029): many tasks in one request and one transaction, all or none, a refusal locating each bad
task, the roles and destination rules of a single create, and the server's body limit."""

from __future__ import annotations

import sys
from typing import Any

import httpx
import pytest
from quart.testing import QuartClient
from web_support import SCHEDULER, Account, error_of

from vareon_runtime.auth import Role
from vareon_runtime.component import Component
from web.errors import MAX_PROBLEMS

TASKS = "/api/myntrix/tasks"
BULK = "/api/myntrix/tasks/bulk"


@pytest.fixture
def front_components() -> tuple[Component, ...]:
    return SCHEDULER


@pytest.fixture
def front_environ() -> dict[str, str]:
    # The local endpoint is loopback, which operators reach only when listed (decision 0024).
    return {"VAREON_OUTBOUND_ALLOW": "127.0.0.1"}


def api_task(name: str, url: str = "http://127.0.0.1:9/ping", **fields: Any) -> dict[str, Any]:
    return {"name": name, "schedule": "@hourly", "action": "api", "parameters": {"url": url}, **fields}


def script_task(name: str) -> dict[str, Any]:
    return {"name": name, "schedule": "@daily", "action": "script", "parameters": {"argv": [sys.executable, "-V"]}}


async def listed(client: httpx.AsyncClient, account: Account) -> list[dict[str, Any]]:
    response = await client.get(TASKS, params={"limit": 500}, headers=account.headers)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def test_an_operator_creates_many_tasks_in_one_request(client: httpx.AsyncClient, accounts: dict[Role, Account]) -> None:
    operator, viewer = accounts[Role.OPERATOR], accounts[Role.VIEWER]
    body = {"tasks": [api_task(f"ping-{i}", timezone="Europe/Berlin") for i in range(3)] + [api_task("off", enabled=False)]}
    response = await client.post(BULK, json=body, headers=operator.headers)
    assert response.status_code == 201, response.text
    answer = response.json()
    assert set(answer) == {"count", "ids"} and answer["count"] == 4 and len(set(answer["ids"])) == 4

    tasks = {task["id"]: task for task in await listed(client, viewer)}
    assert [tasks[task_id]["name"] for task_id in answer["ids"]] == ["ping-0", "ping-1", "ping-2", "off"]
    first = tasks[answer["ids"][0]]
    assert first["createdBy"] == operator.username and first["timezone"] == "Europe/Berlin"
    assert len(first["nextRuns"]) == 5 and first["nextRun"].endswith(("+01:00", "+02:00"))
    assert tasks[answer["ids"][3]]["nextRuns"] == []
    await _refused(await client.post(BULK, json=body, headers=viewer.headers), 403)


async def test_one_bad_task_is_a_422_naming_each_index_and_field_and_nothing_is_created(
    client: httpx.AsyncClient, accounts: dict[Role, Account]
) -> None:
    operator = accounts[Role.OPERATOR]
    body = {
        "tasks": [
            api_task("fine"),
            api_task("bad minute", schedule="61 * * * *"),
            api_task("inward", url="http://10.1.2.3/admin"),  # private, not listed: admins only
            api_task("fine too"),
        ]
    }
    error = await _refused(await client.post(BULK, json=body, headers=operator.headers), 422)
    assert str(error["message"]).startswith("tasks.1.schedule: cron expression '61 * * * *' is invalid")
    assert str(error["message"]).endswith("(and 1 more); none of the 4 tasks was created")
    details = error["details"]
    assert isinstance(details, list)
    assert [problem["loc"] for problem in details] == [["tasks", 1, "schedule"], ["tasks", 2, "parameters", "url"]]
    assert details[1]["msg"].startswith("10.1.2.3 is a private address; only an admin may aim an outbound call there")
    assert await listed(client, operator) == []

    # A body that is not a list of tasks is refused by its shape, located in the body.
    error = await _refused(await client.post(BULK, json={"tasks": [{"name": "x"}]}, headers=operator.headers), 422)
    assert ["body", "tasks", 0, "schedule"] in [problem["loc"] for problem in error["details"]]  # type: ignore[union-attr]
    await _refused(await client.post(BULK, json={"tasks": []}, headers=operator.headers), 422)
    assert await listed(client, operator) == []


async def test_script_tasks_in_bulk_need_an_admin(client: httpx.AsyncClient, accounts: dict[Role, Account]) -> None:
    admin, operator = accounts[Role.ADMIN], accounts[Role.OPERATOR]
    body = {"tasks": [api_task("ping"), script_task("backup")]}
    error = await _refused(await client.post(BULK, json=body, headers=operator.headers), 403)
    assert str(error["message"]).startswith("tasks.1.action: only an admin may create a script task")
    assert error["details"] == [
        {"loc": ["tasks", 1, "action"], "msg": error["details"][0]["msg"], "type": "forbidden"}  # type: ignore[index]
    ]
    assert await listed(client, admin) == []
    response = await client.post(BULK, json=body, headers=admin.headers)
    assert response.status_code == 201, response.text
    assert {task["action"] for task in await listed(client, admin)} == {"api", "script"}


async def test_the_list_of_problems_is_capped(client: httpx.AsyncClient, accounts: dict[Role, Account]) -> None:
    operator = accounts[Role.OPERATOR]
    body = {"tasks": [api_task(f"bad-{i}", schedule="* * *") for i in range(3 * MAX_PROBLEMS)]}
    error = await _refused(await client.post(BULK, json=body, headers=operator.headers), 422)
    details = error["details"]
    assert isinstance(details, list) and len(details) == MAX_PROBLEMS + 1
    assert details[-1]["type"] == "truncated" and f"{2 * MAX_PROBLEMS} more problem(s)" in details[-1]["msg"]
    assert f"(and {3 * MAX_PROBLEMS - 1} more)" in str(error["message"])


async def test_a_bulk_body_over_the_servers_limit_is_413_naming_the_setting(
    test_client: QuartClient, client: httpx.AsyncClient, accounts: dict[Role, Account]
) -> None:
    # The route takes what [server] max_body_size allows (1 MiB here); 10,000 such tasks do not
    # fit, and are refused from their Content-Length, before the body is read.
    operator = accounts[Role.OPERATOR]
    body = {"tasks": [api_task(f"ping-{i:05d}", url=f"http://127.0.0.1:9/{'x' * 80}") for i in range(10_000)]}
    response = await test_client.post(BULK, json=body, headers=operator.headers)
    assert response.status_code == 413
    error = error_of(await response.get_json())
    assert "max_body_size" in str(error["message"])
    assert await listed(client, operator) == []


async def _refused(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    return error_of(response.json())
