"""GET /api/myntrix/jobs: what the agents did, newest first, filtered, counted."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import pytest
from web_support import AGENTS, Account, error_of

from vareon_runtime.auth import Role
from vareon_runtime.component import Component

PATH = "/api/myntrix/jobs"


@pytest.fixture
def front_components() -> tuple[Component, ...]:
    return AGENTS


async def test_agent_lifecycle_shows_as_jobs(
    client: httpx.AsyncClient, accounts: dict[Role, Account], tmp_path: Path
) -> None:
    admin, operator, viewer = accounts[Role.ADMIN], accounts[Role.OPERATOR], accounts[Role.VIEWER]
    assert (await client.get(PATH)).status_code == 401
    empty = await client.get(PATH, headers=viewer.headers)
    assert empty.status_code == 200 and empty.json() == [] and empty.headers["X-Total-Count"] == "0"

    script = tmp_path / "sleeper.py"
    script.write_text("import time\nwhile True:\n    time.sleep(1)\n")
    created = await client.post(
        "/api/myntrix/agents",
        json={"name": "sleeper", "configuration": {"command": [sys.executable, str(script)], "stopTimeout": 2}},
        headers=admin.headers,
    )
    agent = f"/api/myntrix/agents/{created.json()['id']}"
    assert (await client.post(f"{agent}/start", headers=operator.headers)).status_code == 200
    assert (await client.post(f"{agent}/start", headers=operator.headers)).status_code == 409
    assert (await client.post(f"{agent}/stop", headers=operator.headers)).status_code == 200

    response = await client.get(PATH, headers=viewer.headers)
    assert response.status_code == 200 and response.headers["X-Total-Count"] == "3"
    jobs = response.json()
    assert [(j["type"], j["status"]) for j in jobs] == [
        ("agent.stop", "completed"),
        ("agent.start", "failed"),
        ("agent.start", "completed"),
    ]
    newest = jobs[0]
    assert set(newest) == {"id", "name", "type", "status", "progress", "createdAt", "updatedAt", "logs", "details"}
    assert newest["progress"] == 100 and newest["createdAt"].endswith("Z")
    assert newest["details"]["agentId"] == created.json()["id"]
    assert "ConflictError" in jobs[1]["logs"]

    failed = await client.get(f"{PATH}?status=failed", headers=viewer.headers)
    assert [j["id"] for j in failed.json()] == [jobs[1]["id"]] and failed.headers["X-Total-Count"] == "1"
    starts = await client.get(f"{PATH}?type=agent.start&limit=1&offset=1", headers=viewer.headers)
    assert [j["id"] for j in starts.json()] == [jobs[2]["id"]] and starts.headers["X-Total-Count"] == "2"
    for bad in ("status=done", "limit=501", "offset=-1"):
        response = await client.get(f"{PATH}?{bad}", headers=viewer.headers)
        assert response.status_code == 422, bad
        assert error_of(response.json())["code"] == "invalid"
