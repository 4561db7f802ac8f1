"""What a fuzzer sends gets a clear 4xx and a short answer: huge numbers, control characters in
names, bodies with thousands of wrong keys (WebSocket topics: test_websocket.py)."""

from __future__ import annotations

import httpx
import pytest
from web_support import DOMAINS, Account, error_of

from actors.kit.parsing import OFFSET_MAX
from vareon_runtime.auth import Role
from vareon_runtime.component import Component
from web.errors import MAX_PROBLEMS

LISTS = (
    "/api/myntrix/agents",
    "/api/myntrix/devices",
    "/api/myntrix/hardware",
    "/api/myntrix/tasks",
    "/api/myntrix/tasks/history",
    "/api/myntrix/jobs",
)


@pytest.fixture
def front_components() -> tuple[Component, ...]:
    return DOMAINS


@pytest.mark.parametrize("path", LISTS)
@pytest.mark.parametrize("offset", ["9223372036854775808", str(OFFSET_MAX + 1), "-1"])
async def test_an_offset_out_of_range_is_422_on_every_list(
    client: httpx.AsyncClient, accounts: dict[Role, Account], path: str, offset: str
) -> None:
    response = await client.get(path, params={"offset": offset}, headers=accounts[Role.VIEWER].headers)
    assert response.status_code == 422, response.text
    error = error_of(response.json())
    assert error["details"][0]["loc"] == ["query", "offset"]  # type: ignore[index]


@pytest.mark.parametrize("path", LISTS)
async def test_the_largest_offset_is_an_empty_page(
    client: httpx.AsyncClient, accounts: dict[Role, Account], path: str
) -> None:
    response = await client.get(path, params={"offset": str(OFFSET_MAX)}, headers=accounts[Role.VIEWER].headers)
    assert response.status_code == 200, response.text
    assert response.json() == []


async def test_thousands_of_unknown_keys_get_a_short_answer_that_counts_them(
    client: httpx.AsyncClient, accounts: dict[Role, Account]
) -> None:
    body = {"name": "a", "configuration": {"argv": ["true"]}, **{f"k{i}": 0 for i in range(5000)}}
    response = await client.post("/api/myntrix/agents", json=body, headers=accounts[Role.ADMIN].headers)
    assert response.status_code == 422
    error = error_of(response.json())
    details = error["details"]
    assert isinstance(details, list) and len(details) == MAX_PROBLEMS + 1
    assert details[-1]["type"] == "truncated"
    assert details[-1]["msg"].startswith(f"{5000 - MAX_PROBLEMS} more problem(s) not listed")
    assert "(and 4999 more)" in str(error["message"])
    assert len(response.content) < 10_000


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/myntrix/agents", {"name": "x\nCRITICAL forged", "configuration": {"argv": ["true"]}}),
        ("/api/myntrix/devices", {"name": "x\r\nCRITICAL forged", "connectionString": "loop://"}),
        ("/api/myntrix/tasks", {"name": "nul\x00", "schedule": "* * * * *", "action": "api",
                                "parameters": {"url": "https://example.com/"}}),
        ("/api/myntrix/tasks", {"name": "esc\x1b[31m", "schedule": "* * * * *", "action": "api",
                                "parameters": {"url": "https://example.com/"}}),
    ],
)
async def test_a_name_with_a_control_character_is_422(
    client: httpx.AsyncClient, accounts: dict[Role, Account], path: str, body: dict[str, object]
) -> None:
    response = await client.post(path, json=body, headers=accounts[Role.ADMIN].headers)
    assert response.status_code == 422, response.text
    error = error_of(response.json())
    assert error["details"][0]["loc"] == ["body", "name"]  # type: ignore[index]
    assert "must not hold control characters" in str(error["message"])


async def test_a_name_with_unicode_but_no_control_character_is_kept(
    client: httpx.AsyncClient, accounts: dict[Role, Account]
) -> None:
    body = {"name": "Drucker \u00fc \u2603 \u6f22", "connectionString": "loop://"}
    response = await client.post("/api/myntrix/devices", json=body, headers=accounts[Role.ADMIN].headers)
    assert response.status_code == 201, response.text
    assert response.json()["name"] == body["name"]
