"""/api/myntrix/tasks/history over HTTP: newest first, filters by task, status and start time,
pagination with X-Total-Count, and refusals of bad filters; on SQLite and on PostgreSQL."""

from __future__ import annotations

import sys
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
import trio
from web_support import Account, SCHEDULER, error_of

from vareon_runtime.auth import Role
from vareon_runtime.component import Component

TIMEOUT = 20.0
TASKS = "/api/myntrix/tasks"
HISTORY = f"{TASKS}/history"


@pytest.fixture
def front_components() -> tuple[Component, ...]:
    return SCHEDULER


@pytest.fixture
def front_environ(database_url: str) -> dict[str, str]:
    """Each test on SQLite and on PostgreSQL (skipped, saying why, when it is unreachable)."""
    return {"VAREON_DATABASE_URL": database_url}


async def create(client: httpx.AsyncClient, admin: Account, name: str, code: str) -> str:
    body = {
        "name": name,
        "schedule": "@yearly",
        "action": "script",
        "parameters": {"argv": [sys.executable, "-c", code]},
    }
    response = await client.post(TASKS, json=body, headers=admin.headers)
    assert response.status_code == 201, response.text
    task_id: str = response.json()["id"]
    return task_id


async def run_to_end(client: httpx.AsyncClient, admin: Account, task_id: str) -> dict[str, Any]:
    response = await client.post(f"{TASKS}/{task_id}/run", headers=admin.headers)
    assert response.status_code == 202, response.text
    run_id = response.json()["id"]
    with trio.fail_after(TIMEOUT):
        while True:
            runs = (await client.get(HISTORY, params={"taskId": task_id, "limit": 500}, headers=admin.headers)).json()
            done = [run for run in runs if run["id"] == run_id and run["status"] != "running"]
            if done:
                return done[0]  # type: ignore[no-any-return]
            await trio.sleep(0.05)


async def history(client: httpx.AsyncClient, account: Account, **params: Any) -> tuple[list[dict[str, Any]], int]:
    response = await client.get(HISTORY, params=params, headers=account.headers)
    assert response.status_code == 200, response.text
    return response.json(), int(response.headers["X-Total-Count"])


@pytest.fixture
async def runs(client: httpx.AsyncClient, accounts: dict[Role, Account]) -> dict[str, Any]:
    """Two tasks, five finished runs: good, bad, good, good, bad (in this order of start)."""
    admin = accounts[Role.ADMIN]
    good = await create(client, admin, "good", "print('ok')")
    bad = await create(client, admin, "bad", "import sys; print('broken', file=sys.stderr); sys.exit(3)")
    made = []
    for task_id in (good, bad, good, good, bad):
        made.append(await run_to_end(client, admin, task_id))
    return {"good": good, "bad": bad, "runs": made}


async def test_newest_first_with_the_total_and_pages(
    client: httpx.AsyncClient, accounts: dict[Role, Account], runs: dict[str, Any]
) -> None:
    viewer = accounts[Role.VIEWER]
    made = runs["runs"]
    items, total = await history(client, viewer)
    assert total == 5
    assert [run["id"] for run in items] == [run["id"] for run in reversed(made)]
    starts = [run["startTime"] for run in items]
    assert starts == sorted(starts, reverse=True)

    pages = []
    for offset in (0, 2, 4):
        page, total = await history(client, viewer, limit=2, offset=offset)
        assert total == 5
        pages.append([run["id"] for run in page])
    assert [len(page) for page in pages] == [2, 2, 1]
    assert sum(pages, []) == [run["id"] for run in items]
    assert await history(client, viewer, limit=2, offset=10) == ([], 5)


async def test_filters_by_task_and_status(
    client: httpx.AsyncClient, accounts: dict[Role, Account], runs: dict[str, Any]
) -> None:
    viewer = accounts[Role.VIEWER]
    good, total = await history(client, viewer, taskId=runs["good"])
    assert total == 3 and {run["taskId"] for run in good} == {runs["good"]}
    assert {run["status"] for run in good} == {"success"}
    bad, total = await history(client, viewer, task_id=runs["bad"])  # either spelling
    assert total == 2 and {(run["status"], run["exitCode"]) for run in bad} == {("failed", 3)}
    assert all("stderr: broken" in run["logs"] for run in bad)
    assert all(run["error"] and "exited with code 3" in run["error"] for run in bad)

    failed, total = await history(client, viewer, status="failed")
    assert total == 2 and [run["id"] for run in failed] == [run["id"] for run in bad]
    both, total = await history(client, viewer, taskId=runs["good"], status="failed")
    assert (both, total) == ([], 0)
    success, total = await history(client, viewer, status="success")
    assert total == 3 and {run["taskId"] for run in success} == {runs["good"]}
    assert await history(client, viewer, status="succeeded") == (success, 3)  # the former spelling
    assert await history(client, viewer, taskId="0b0e3b4c-9a63-4a3e-9a55-2a7e0c4b0d11") == ([], 0)


async def test_filters_by_start_time(
    client: httpx.AsyncClient, accounts: dict[Role, Account], runs: dict[str, Any]
) -> None:
    viewer = accounts[Role.VIEWER]
    made = runs["runs"]
    third = made[2]["startTime"]
    later, total = await history(client, viewer, since=third)  # inclusive
    assert total == 3 and [run["id"] for run in later] == [run["id"] for run in reversed(made[2:])]
    earlier, total = await history(client, viewer, until=third)  # exclusive
    assert total == 2 and [run["id"] for run in earlier] == [run["id"] for run in reversed(made[:2])]
    between, total = await history(client, viewer, since=made[1]["startTime"], until=made[3]["startTime"])
    assert [run["id"] for run in between] == [made[2]["id"], made[1]["id"]] and total == 2

    future = (datetime.now(timezone.utc) + timedelta(days=1)).isoformat()
    assert await history(client, viewer, since=future) == ([], 0)
    # A time without a zone is UTC.
    naive = (datetime.now(timezone.utc) - timedelta(days=1)).replace(tzinfo=None).isoformat()
    assert (await history(client, viewer, since=naive))[1] == 5


@pytest.mark.parametrize(
    ("params", "text"),
    [
        ({"status": "exploded"}, "status"),
        ({"limit": 0}, "limit"),
        ({"limit": 501}, "limit"),
        ({"offset": -1}, "offset"),
        ({"since": "yesterday"}, "since"),
        ({"since": "2024-02-01T00:00:00Z", "until": "2024-01-01T00:00:00Z"}, "must not be after until"),
    ],
)
async def test_bad_filters_are_refused(
    client: httpx.AsyncClient, accounts: dict[Role, Account], params: dict[str, Any], text: str
) -> None:
    response = await client.get(HISTORY, params=params, headers=accounts[Role.VIEWER].headers)
    assert response.status_code in (400, 422), response.text
    error = error_of(response.json())
    assert text in str(error["message"]) + str(error["details"])


async def test_task_list_pages_and_counts(client: httpx.AsyncClient, accounts: dict[Role, Account]) -> None:
    admin, viewer = accounts[Role.ADMIN], accounts[Role.VIEWER]
    ids = [await create(client, admin, f"t{index}", "pass") for index in range(3)]
    response = await client.get(TASKS, params={"limit": 2}, headers=viewer.headers)
    assert response.status_code == 200 and response.headers["X-Total-Count"] == "3"
    first = [task["id"] for task in response.json()]
    second = [task["id"] for task in (await client.get(TASKS, params={"limit": 2, "offset": 2}, headers=viewer.headers)).json()]
    assert sorted(first + second) == sorted(ids) and len(first) == 2
    response = await client.get(TASKS, params={"limit": 0}, headers=viewer.headers)
    assert response.status_code in (400, 422)
    error_of(response.json())
